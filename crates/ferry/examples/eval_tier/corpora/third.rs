//! The third, held-out corpus (`--corpus third`): construction, office, farm, hospital,
//! station … scenes worded by terse and long-winded captioners, with look-alike pairs.

use super::Corpus;

/// The third, held-out corpus (`--corpus third`): again other domains (construction, office,
/// farm, parking garage, hospital, school, railway, harbour, fuel station, back yard), each scene
/// worded the way different captioners put it (terse BLIP-like, long LLaVA-like), and a few
/// look-alike pairs of genuinely different scenes that share their vocabulary. Written separately
/// from [`SCENES`](super::seed::SCENES) and [`OTHER_SCENES`](super::other::OTHER_SCENES) and never used to choose a default.
const THIRD_SCENES: &[&[&str]] = &[
    &[
        "excavator digging a trench",
        "a yellow excavator digs a ditch at a building site",
        "there is a digger scooping dirt on a construction site",
        "The image shows a large excavator with its bucket lowered into a muddy trench, piles of earth beside it.",
        "backhoe excavating soil",
    ],
    &[
        "tower crane hoisting steel girders",
        "a crane lifts metal beams above an unfinished building",
        "steel beams hanging from a crane hook",
        "A tall construction crane raises a bundle of steel girders over the concrete frame of a new building.",
        "crane lifting beams",
    ],
    &[
        "workers in hard hats pouring concrete",
        "builders in high visibility vests spreading wet cement",
        "construction crew levelling a fresh concrete slab",
        "Several workers wearing helmets and orange vests pour concrete from a mixer truck into wooden formwork.",
        "men pouring cement",
        "a concrete pour on site",
    ],
    &[
        "receptionist at the front desk",
        "a woman sitting behind a reception counter",
        "visitor signing in with the receptionist",
        "The picture shows an office reception desk where a staff member greets a visitor holding a badge.",
        "front desk with a clerk",
    ],
    &[
        "people waiting for the elevator",
        "office workers standing in front of the lift doors",
        "a few employees wait by the elevators in the lobby",
        "Three people in business clothes stand near a bank of elevators, one of them looking at her phone.",
        "group at the lifts",
    ],
    &[
        "empty lobby with the lights dimmed",
        "a vacant office foyer after hours",
        "nobody at reception, lobby closed for the night",
        "An unoccupied corporate lobby with polished floors, a dark reception counter and a row of chairs.",
        "empty foyer",
    ],
    &[
        "cows standing in a barn",
        "dairy cattle eating hay in their stalls",
        "a herd of black and white cows inside a cowshed",
        "The image depicts several Holstein cows lined up at a feeding rail inside a wooden barn.",
        "cattle in stalls",
    ],
    &[
        "horse being led out of the stable",
        "a farmhand walks a brown horse through the stable door",
        "woman leading a pony by its halter",
        "A person holding a lead rope guides a chestnut horse out of a stall and into the barnyard.",
        "horse and handler",
    ],
    &[
        "chickens pecking in the farmyard",
        "hens scratching around on the ground",
        "a flock of chickens feeding near the coop",
        "Numerous brown and white hens wander across a dirt yard next to a small wooden henhouse.",
        "poultry outside",
    ],
    &[
        "car entering the parking garage",
        "a silver car drives in under the raised barrier",
        "vehicle coming into the multi storey car park",
        "A car pulls up to the entry ramp of the garage as the boom gate lifts to let it in.",
        "car driving into garage",
    ],
    &[
        "car leaving the parking garage",
        "a car exits past the barrier at the garage exit",
        "vehicle driving out of the multi storey car park",
        "A hatchback rolls down the exit ramp and out of the garage while the gate arm is up.",
        "car driving out of garage",
    ],
    &[
        "man walking between parked cars in the garage",
        "a person with a briefcase crossing an underground car park",
        "pedestrian on a concrete garage level",
        "A lone man walks past rows of parked cars on a dim level of the parking structure, keys in hand.",
        "someone on foot in the garage",
    ],
    &[
        "nurses pushing a patient on a gurney",
        "a hospital bed wheeled down the corridor by staff",
        "medical staff moving a patient on a stretcher",
        "Two nurses in blue scrubs roll a patient lying on a stretcher along a brightly lit hospital hallway.",
        "patient transport in corridor",
        "stretcher in hallway",
    ],
    &[
        "empty hospital corridor",
        "a long clinic hallway with nobody in it",
        "deserted ward corridor under fluorescent lights",
        "A quiet hospital passage with closed doors on both sides, a hand sanitiser station and no people.",
        "vacant hallway",
    ],
    &[
        "students playing football in the schoolyard",
        "kids kicking a ball around at recess",
        "a soccer game among pupils in the school yard",
        "Teenagers in school uniforms chase a football across the asphalt yard in front of the school building.",
        "boys playing soccer",
    ],
    &[
        "pupils lining up outside the classroom",
        "a row of schoolchildren waiting with their backpacks",
        "teacher leading a line of kids into the school",
        "Young students stand in two orderly lines by the school doors while a teacher counts them.",
        "children in a queue",
    ],
    &[
        "train pulling into the station",
        "a passenger train arriving at the platform",
        "locomotive slowing down next to the platform edge",
        "A red and white commuter train comes to a stop alongside the station platform, its doors still closed.",
        "train arriving",
    ],
    &[
        "crowded train platform",
        "commuters waiting for the train",
        "many passengers standing on the platform with luggage",
        "A busy railway platform full of travellers looking at the departure board and waiting behind the yellow line.",
        "people on the platform",
        "rush hour at the station",
    ],
    &[
        "fishing boat unloading its catch",
        "fishermen lifting crates of fish onto the quay",
        "a trawler moored at the pier with nets on deck",
        "Men in rubber boots unload plastic boxes of fresh fish from a small fishing vessel tied up at the harbour.",
        "boat at the pier",
    ],
    &[
        "container ship moored at the dock",
        "a cargo vessel being loaded by gantry cranes",
        "shipping containers stacked on a freighter in port",
        "A huge container ship sits alongside the terminal while cranes move colourful containers on and off it.",
        "freighter in the harbour",
    ],
    &[
        "car filling up at the gas pump",
        "a driver refuels his sedan at the petrol station",
        "man holding a fuel nozzle next to a car",
        "A person stands beside a compact car at a fuel pump, the nozzle inserted into the tank.",
        "refuelling a car",
    ],
    &[
        "truck refuelling at the diesel pump",
        "a semi truck parked at the fuel island",
        "lorry driver filling the tank of his rig",
        "A large tractor trailer is stopped at the truck lane of a gas station while the driver pumps diesel.",
        "big rig at the pump",
    ],
    &[
        "dog in the yard at night",
        "a dog sniffing around the back garden in the dark",
        "there is a dog standing on the grass lit by a porch light",
        "An infrared image of a medium sized dog wandering across a back lawn at night, eyes glowing.",
        "dog outside at night",
    ],
    &[
        "empty yard at night",
        "a dark back garden with no one in it",
        "nothing moving on the lawn, porch light on",
        "A night vision view of an empty back yard with a fence, a patio table and a garden shed.",
        "empty backyard",
        "quiet yard after dark",
    ],
];

/// Framing phrases of the third corpus's captioner.
const THIRD_PREFIXES: &[&str] = &[
    "there is ",
    "this is an image of ",
    "surveillance footage of ",
    "a blurry photo of ",
    "in this picture we can see ",
    "",
    "",
];

/// The third held-out corpus: 40 % of the scenes `--min-scene` (10 s)–60 s, the rest 60 s–10 min,
/// a caption every 1–6 s.
pub const THIRD_CORPUS: Corpus = Corpus {
    name: "third",
    scenes: THIRD_SCENES,
    prefixes: THIRD_PREFIXES,
    max_scene_ms: 600_000,
    short_scenes: 0.4,
    interval_ms: (1_000, 6_000),
    suffixes: &[
        " at night",
        " in the rain",
        ", grainy",
        ", black and white",
        "",
    ],
};
