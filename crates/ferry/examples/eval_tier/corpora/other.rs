//! The second, held-out corpus (`--corpus other`): retail, warehouse, street and home scenes
//! with their own framing phrases and scenes from 10 s to 15 min.

use super::Corpus;

/// The second, held-out corpus (`--corpus other`): other domains (retail, warehouse, street,
/// home), other wording and framing phrases, none of them among the normaliser's default
/// boilerplate prefixes, and scenes from a few seconds up to 15 minutes. Written separately from
/// [`SCENES`](super::seed::SCENES) and never used to choose a default.
pub const OTHER_SCENES: &[&[&str]] = &[
    &[
        "customer paying at the checkout counter",
        "a shopper pays the cashier at the till",
        "woman handing cash to the cashier",
        "person completing a purchase at the register",
    ],
    &[
        "shelves being restocked by an employee",
        "store clerk stocking products on a shelf",
        "worker placing cans on the supermarket shelves",
        "employee filling the aisle shelves with goods",
    ],
    &[
        "empty aisle in the store",
        "no one in the shop aisle",
        "a vacant supermarket aisle under bright lights",
        "deserted aisle between grocery shelves",
    ],
    &[
        "shopper pushing a trolley down the aisle",
        "man with a shopping cart walking between shelves",
        "customer wheels a cart through the store",
        "a woman pushing a cart past the produce section",
    ],
    &[
        "person slipping an item into a jacket",
        "shoplifter hiding merchandise under his coat",
        "man concealing a product in his pocket",
        "someone stuffing goods into a backpack near the shelves",
    ],
    &[
        "pallet jack pulled across the loading bay",
        "worker dragging a pallet jack with crates",
        "hand pallet truck moving stacked crates",
        "employee hauling a loaded pallet jack",
    ],
    &[
        "stacked cardboard boxes fall over",
        "a pile of cartons collapses onto the floor",
        "boxes tumbling from a tall stack",
        "cardboard boxes toppling in the storage area",
    ],
    &[
        "roller shutter door opening",
        "the loading bay shutter rolls up",
        "garage style door being raised at the dock",
        "metal shutter lifting at the warehouse entrance",
    ],
    &[
        "worker scanning parcels on a conveyor belt",
        "packages moving along the conveyor",
        "employee with a barcode scanner at the sorting belt",
        "parcels travelling down a conveyor line",
    ],
    &[
        "traffic waiting at a red light",
        "cars stopped at the traffic signal",
        "a queue of vehicles halted at the intersection",
        "vehicles lined up at the stop light",
    ],
    &[
        "pedestrians crossing at the zebra crossing",
        "people walking over the crosswalk",
        "a group crossing the road at the pedestrian crossing",
        "walkers using the crosswalk",
    ],
    &[
        "motorbike speeding along the road",
        "a motorcycle races down the street",
        "rider on a scooter weaving through traffic",
        "fast motorcycle passing by",
    ],
    &[
        "street sweeper truck cleaning the road",
        "a municipal sweeper vehicle brushing the kerb",
        "road cleaning machine driving slowly",
        "sweeper lorry cleaning the gutter",
    ],
    &[
        "taxi dropping off a passenger at the curb",
        "a cab stops and a man gets out",
        "passenger stepping out of a taxi",
        "yellow taxi letting someone out at the sidewalk",
    ],
    &[
        "courier leaving a parcel on the doorstep",
        "delivery driver drops a package at the front door",
        "mail carrier placing a box by the entrance",
        "a package being left on the porch",
    ],
    &[
        "family eating dinner at the table",
        "people sitting around the kitchen table having a meal",
        "parents and kids eating together",
        "a family dinner in the dining room",
    ],
    &[
        "toddler climbing the stairs",
        "a small child crawling up the staircase",
        "little kid going up the steps alone",
        "baby on the stairs",
    ],
    &[
        "television on in an empty living room",
        "nobody in the lounge, tv playing",
        "living room with the tv switched on and no people",
        "an unoccupied sofa facing a lit television",
    ],
    &[
        "person watering plants in the garden",
        "a man with a hose watering flower beds",
        "woman sprinkling water on the plants",
        "gardener watering the vegetable patch",
    ],
    &[
        "smoke rising from the kitchen stove",
        "a pan smoking on the cooker",
        "kitchen filling with smoke",
        "fumes coming off a burning pot on the hob",
    ],
    &[
        "stranger trying door handles of parked cars",
        "man testing car doors along the street",
        "suspicious person pulling on vehicle handles",
        "someone checking whether parked cars are unlocked",
    ],
    &[
        "cleaner mopping the shop floor",
        "janitor wiping the floor with a mop",
        "staff member cleaning the tiles near the entrance",
        "floor being mopped by a worker",
    ],
];

/// Framing phrases of the second corpus's captioner (not in the normaliser's default list).
const OTHER_PREFIXES: &[&str] = &[
    "cctv still showing ",
    "the camera shows ",
    "image depicting ",
    "a wide angle shot of ",
    "live feed: ",
    "frame shows ",
    "",
    "",
];

/// The held-out corpus: a third of the scenes `--min-scene` (10 s)–60 s, the rest 60 s–15 min.
pub const OTHER_CORPUS: Corpus = Corpus {
    name: "other",
    scenes: OTHER_SCENES,
    prefixes: OTHER_PREFIXES,
    max_scene_ms: 900_000,
    short_scenes: 0.33,
    interval_ms: (2_000, 9_000),
    suffixes: &[" in daylight", ", seen from above", ", low resolution", ""],
};
