//! The seed-style corpus (`--corpus seed`), the one the defaults were first calibrated on:
//! farm, car park, yard and street scenes with the seed's boilerplate prefixes.

use super::Corpus;

/// Paraphrase sets: each line is one true scene, described several ways.
pub const SCENES: &[&[&str]] = &[
    &[
        "man in fields",
        "a man standing in a field",
        "man working in agricultural field",
        "person in the fields",
        "a farmer in a field",
    ],
    &[
        "red car parked at the gate",
        "a red car parked near the gate",
        "red vehicle parked by the entrance gate",
        "a red sedan stopped at the gate",
    ],
    &[
        "person walking away from field",
        "a man walks away across the field",
        "someone leaving the field on foot",
        "person walking off into the distance",
    ],
    &[
        "delivery truck unloading boxes at the dock",
        "workers unload a truck at the loading dock",
        "a lorry being unloaded at the warehouse dock",
        "boxes carried off a delivery truck",
    ],
    &[
        "empty parking lot at night",
        "a deserted car park in the dark",
        "parking lot with no cars at night",
        "an empty lot lit by street lamps",
    ],
    &[
        "two people talking near the door",
        "a pair of people chatting by the entrance",
        "two men having a conversation at the doorway",
        "two persons standing and talking near a door",
    ],
    &[
        "dog running across the yard",
        "a dog runs through the backyard",
        "a small dog sprinting across the lawn",
        "dog playing in the yard",
    ],
    &[
        "cyclist riding down the street",
        "a person on a bicycle riding along the road",
        "man cycling down the street",
        "a bike rider passing on the road",
    ],
    &[
        "heavy rain falling on the driveway",
        "rain pouring down on an empty driveway",
        "a wet driveway in heavy rain",
        "downpour over the driveway",
    ],
    &[
        "woman carrying shopping bags to a car",
        "a woman loads grocery bags into her car",
        "lady with shopping bags walking to a vehicle",
        "woman putting bags in the car trunk",
    ],
    &[
        "forklift moving pallets in the warehouse",
        "a forklift carries a pallet across the warehouse",
        "pallets being moved by a forklift indoors",
        "forklift driving between warehouse shelves",
    ],
    &[
        "children playing on the playground",
        "kids playing on swings and slides",
        "a group of children at the playground",
        "young children running around a play area",
    ],
    &[
        "crowd gathered at the entrance",
        "a large group of people at the front entrance",
        "many people crowding around the entrance",
        "people queueing at the main entrance",
    ],
    &[
        "cat sitting on the windowsill",
        "a cat resting on a window ledge",
        "a cat sits by the window",
        "cat lying on the windowsill",
    ],
    &[
        "bus stopping at the bus stop",
        "a city bus pulls up at the stop",
        "passengers boarding a bus at the stop",
        "a bus halted at the bus shelter",
    ],
    &[
        "man climbing over the fence",
        "a person climbs the fence",
        "someone scaling a fence",
        "man jumping over a fence",
    ],
    &[
        "snow covering the parking area",
        "a snowy car park",
        "parking area covered in snow",
        "snow on the ground of the parking lot",
    ],
    &[
        "security guard patrolling the hallway",
        "a guard walks down the corridor",
        "security officer on patrol in a hallway",
        "a uniformed guard walking the hall",
    ],
    &[
        "ambulance arriving with lights on",
        "an ambulance with flashing lights pulls in",
        "emergency vehicle arriving with sirens",
        "an ambulance drives up with its lights flashing",
    ],
    &[
        "tractor plowing the field",
        "a tractor ploughs the farmland",
        "farm tractor working the soil",
        "tractor driving through a plowed field",
    ],
];

/// Boilerplate the captioner adds in front of captions.
const PREFIXES: &[&str] = &[
    "surveillance camera view of ",
    "security camera footage of ",
    "",
    "",
    "",
];

/// The corpus the defaults were calibrated on: scenes of `--min-scene` (120 s)–400 s.
pub const SEED_CORPUS: Corpus = Corpus {
    name: "seed-style",
    scenes: SCENES,
    prefixes: PREFIXES,
    max_scene_ms: 400_000,
    short_scenes: 0.0,
    interval_ms: (3_000, 12_000),
    suffixes: &[],
};
