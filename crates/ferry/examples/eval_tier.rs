//! Evaluates the tier job's grouping on generated, labelled caption streams.
//!
//! Each camera films a sequence of true scenes; the captioner describes every frame with one of
//! the scene's paraphrases, with noise (dropped words, boilerplate prefixes, case), the odd
//! outlier caption from another scene, and gaps. The grouping then runs per backend and this
//! prints, per backend and threshold:
//! - reduction: 1 − events ÷ captions;
//! - purity: share of events whose captions all come from one true scene;
//! - fragmentation: events per true scene (continuations after `max_duration` count, so a
//!   scene longer than 300 s cannot score 1).
//!
//! Three corpora (`--corpus seed,other,third`): the seed-style one the defaults were first
//! calibrated on; a held-out one with other domains, wording, framing phrases and scenes from
//! 10 s to 15 min; and a third with yet other domains, short and long captioner-style
//! paraphrases, look-alike scene pairs and scenes from 10 s to 10 min.
//!
//! `scripts/eval-tier` runs it in release mode: `cargo run --release --example eval_tier --
//! [--corpus seed,other,third] [--sweep | --threshold X] [--backends lexical,minilm] [--cameras N]
//! [--outliers 0.04] [--min-scene S] [--background] [--no-learning] [--min-duration 60] [--split-confirm 2] [--show-impure]`; `--show-impure` lists each impure
//! event as runs of true scenes (`s12×30*`: 30 captions of scene instance 12, one of them an
//! outlier).

use std::collections::{HashMap, HashSet};

use ferry::jobs::tier::Backend;
use ferry_connectors::embed::MiniLm;
use ferry_core::jobs::tier::grouping::GroupInput;
use ferry_core::jobs::tier::normalize::Normalizer;
use ferry_core::jobs::tier::wordings::Wordings;
use ferry_core::jobs::tier::{Embedder, EntryId, Grouper, GroupingConfig, LexicalEmbedder};

/// Paraphrase sets: each line is one true scene, described several ways.
const SCENES: &[&[&str]] = &[
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

/// The second, held-out corpus (`--corpus other`): other domains (retail, warehouse, street,
/// home), other wording and framing phrases, none of them among the normaliser's default
/// boilerplate prefixes, and scenes from a few seconds up to 15 minutes. Written separately from
/// [`SCENES`] and never used to choose a default.
const OTHER_SCENES: &[&[&str]] = &[
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

/// How one corpus is generated.
struct Corpus {
    name: &'static str,
    scenes: &'static [&'static [&'static str]],
    prefixes: &'static [&'static str],
    /// Scene length: `min_scene_ms` up to this, see [`Corpus::duration`].
    max_scene_ms: u64,
    /// Share of scenes drawn from `min_scene_ms`–60 s (the rest from 60 s up).
    short_scenes: f64,
    /// Time between captions, ms.
    interval_ms: (u64, u64),
    /// Captioner noise: a trailing phrase some captions get.
    suffixes: &'static [&'static str],
}

impl Corpus {
    fn duration(&self, rng: &mut Rng, min_scene_ms: u64) -> u64 {
        let max = self.max_scene_ms.max(min_scene_ms + 1);
        if self.short_scenes > 0.0 && rng.chance(self.short_scenes) {
            let top = 60_000u64.max(min_scene_ms + 1);
            min_scene_ms + rng.below(top - min_scene_ms)
        } else {
            let from = if self.short_scenes > 0.0 {
                60_000u64.max(min_scene_ms).min(max - 1)
            } else {
                min_scene_ms
            };
            from + rng.below(max - from)
        }
    }
}

/// The corpus the defaults were calibrated on: scenes of `--min-scene` (120 s)–400 s.
const SEED_CORPUS: Corpus = Corpus {
    name: "seed-style",
    scenes: SCENES,
    prefixes: PREFIXES,
    max_scene_ms: 400_000,
    short_scenes: 0.0,
    interval_ms: (3_000, 12_000),
    suffixes: &[],
};

/// The held-out corpus: a third of the scenes `--min-scene` (10 s)–60 s, the rest 60 s–15 min.
const OTHER_CORPUS: Corpus = Corpus {
    name: "other",
    scenes: OTHER_SCENES,
    prefixes: OTHER_PREFIXES,
    max_scene_ms: 900_000,
    short_scenes: 0.33,
    interval_ms: (2_000, 9_000),
    suffixes: &[" in daylight", ", seen from above", ", low resolution", ""],
};

/// The third, held-out corpus (`--corpus third`): again other domains (construction, office,
/// farm, parking garage, hospital, school, railway, harbour, fuel station, back yard), each scene
/// worded the way different captioners put it (terse BLIP-like, long LLaVA-like), and a few
/// look-alike pairs of genuinely different scenes that share their vocabulary. Written separately
/// from [`SCENES`] and [`OTHER_SCENES`] and never used to choose a default.
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
const THIRD_CORPUS: Corpus = Corpus {
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

/// A small deterministic generator (xorshift), so every run sees the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
}

struct Labelled {
    input: GroupInput,
    camera: usize,
    scene_instance: usize,
    outlier: bool,
}

/// Captioner noise: boilerplate prefix, a dropped word, a trailing phrase, upper case.
fn noisy(rng: &mut Rng, corpus: &Corpus, text: &str) -> String {
    let mut words: Vec<&str> = text.split(' ').collect();
    if words.len() > 3 && rng.chance(0.2) {
        let i = rng.below(words.len() as u64) as usize;
        words.remove(i);
    }
    let mut s = format!(
        "{}{}",
        corpus.prefixes[rng.below(corpus.prefixes.len() as u64) as usize],
        words.join(" ")
    );
    if !corpus.suffixes.is_empty() && rng.chance(0.15) {
        s.push_str(corpus.suffixes[rng.below(corpus.suffixes.len() as u64) as usize]);
    }
    if rng.chance(0.1) {
        s = s.to_uppercase();
    }
    s
}

fn generate(
    corpus: &Corpus,
    cameras: usize,
    scenes_per_camera: usize,
    seed: u64,
    outliers: f64,
    min_scene_ms: u64,
    background: bool,
) -> Vec<Vec<Labelled>> {
    let mut rng = Rng(seed);
    let mut instance = 0;
    let mut out = Vec::new();
    for camera in 0..cameras {
        let mut t: i64 = 1_700_000_000_000;
        let mut seq = 0u64;
        let mut captions = Vec::new();
        let mut last_scene = usize::MAX;
        for _ in 0..scenes_per_camera {
            let scenes = corpus.scenes;
            let mut scene = rng.below(scenes.len() as u64) as usize;
            while scene == last_scene {
                scene = rng.below(scenes.len() as u64) as usize;
            }
            if background {
                // Every other scene is the camera's background (the corpus's first scene type).
                scene = if last_scene == 0 {
                    1 + rng.below(scenes.len() as u64 - 1) as usize
                } else {
                    0
                };
            }
            last_scene = scene;
            // Some scenes are longer than max_duration; with a background, the scenes between
            // are short (`--min-scene` to 60 s).
            let duration = if background && scene != 0 {
                (min_scene_ms + rng.below(60_000u64.saturating_sub(min_scene_ms).max(1))) as i64
            } else {
                corpus.duration(&mut rng, min_scene_ms) as i64
            };
            let end = t + duration;
            while t < end {
                let outlier = rng.chance(outliers);
                let text = if outlier {
                    // An outlier: the captioner describes something else for one frame.
                    let other = rng.below(scenes.len() as u64) as usize;
                    scenes[other][rng.below(scenes[other].len() as u64) as usize]
                } else {
                    scenes[scene][rng.below(scenes[scene].len() as u64) as usize]
                };
                captions.push(Labelled {
                    input: GroupInput {
                        entry: EntryId::new(t as u64, seq),
                        ts_ms: t,
                        text: noisy(&mut rng, corpus, text),
                        norm: String::new(),
                        embedding: None,
                    },
                    camera,
                    scene_instance: instance,
                    outlier,
                });
                seq += 1;
                let (lo, hi) = corpus.interval_ms;
                t += (lo + rng.below(hi - lo)) as i64;
            }
            instance += 1;
            // Sometimes the camera goes quiet for longer than max_gap.
            if rng.chance(0.2) {
                t += 90_000 + rng.below(120_000) as i64;
            }
        }
        out.push(captions);
    }
    out
}

struct Scores {
    captions: usize,
    events: usize,
    reduction: f64,
    purity: f64,
    fragmentation: f64,
}

fn evaluate(
    streams: &[Vec<Labelled>],
    config: &GroupingConfig,
    vectors: &HashMap<String, Vec<f32>>,
    learn: bool,
    show_impure: bool,
) -> Scores {
    let mut events = 0;
    let mut pure = 0;
    let mut captions = 0;
    let mut scenes = HashSet::new();
    for stream in streams {
        // The lexical backend learns each camera's wordings before its pass, as the job does
        // (`Wordings::learn_from` on the captions with their plain vectors, then `mix`).
        let mixed: Option<HashMap<String, Vec<f32>>> = learn.then(|| {
            let captions: Vec<(EntryId, i64, &str)> = stream
                .iter()
                .map(|c| (c.input.entry, c.input.ts_ms, c.input.norm.as_str()))
                .collect();
            let plain = |t: &str| vectors.get(t).cloned().unwrap_or_default();
            let mut wordings = Wordings::default();
            wordings.learn_from(config, &captions, plain);
            stream
                .iter()
                .map(|c| c.input.norm.as_str())
                .collect::<HashSet<_>>()
                .into_iter()
                .map(|t| (t.to_string(), wordings.mix(t, &plain(t), plain)))
                .collect()
        });
        let vectors = mixed.as_ref().unwrap_or(vectors);
        let mut grouper = Grouper::new(&format!("cam{}", stream[0].camera), config.clone(), "eval");
        let by_entry: HashMap<EntryId, usize> = stream
            .iter()
            .map(|c| (c.input.entry, c.scene_instance))
            .collect();
        let mut made = Vec::new();
        for c in stream {
            captions += 1;
            scenes.insert(c.scene_instance);
            let mut input = c.input.clone();
            input.embedding = vectors.get(&input.norm).cloned();
            made.extend(grouper.push(input));
        }
        made.extend(grouper.close_all());
        let frames: u64 = made.iter().map(|e| e.frame_count).sum();
        assert_eq!(
            frames,
            stream.len() as u64,
            "every caption in exactly one event"
        );
        // Events partition the stream into contiguous runs of entries.
        let mut entries: Vec<EntryId> = by_entry.keys().copied().collect();
        entries.sort();
        for e in &made {
            let from = entries.partition_point(|x| *x < e.first_entry);
            let to = entries.partition_point(|x| *x <= e.last_entry);
            let truth: HashSet<usize> = entries[from..to].iter().map(|x| by_entry[x]).collect();
            if truth.len() == 1 {
                pure += 1;
            } else if show_impure {
                println!("  impure: {}", describe(&stream[..], e, &by_entry));
            }
            events += 1;
        }
    }
    Scores {
        captions,
        events,
        reduction: 1.0 - events as f64 / captions as f64,
        purity: pure as f64 / events as f64,
        fragmentation: events as f64 / scenes.len() as f64,
    }
}

/// One impure event as runs of true scenes (`scene×captions`, `*` marks outlier captions), its
/// duration and whether it continues an earlier event.
fn describe(
    stream: &[Labelled],
    event: &ferry_core::jobs::tier::TierEvent,
    by_entry: &HashMap<EntryId, usize>,
) -> String {
    let mut runs: Vec<(usize, usize, usize)> = Vec::new();
    for c in stream
        .iter()
        .filter(|c| c.input.entry >= event.first_entry && c.input.entry <= event.last_entry)
    {
        let scene = by_entry[&c.input.entry];
        let outlier = usize::from(c.outlier);
        match runs.last_mut() {
            Some((s, n, o)) if *s == scene => {
                *n += 1;
                *o += outlier;
            }
            _ => runs.push((scene, 1, outlier)),
        }
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|(s, n, o)| format!("s{s}×{n}{}", "*".repeat(*o)))
        .collect();
    format!(
        "{} ({} s{})",
        runs.join(" "),
        (event.end_ms - event.start_ms) / 1000,
        if event.previous_event_id.is_some() {
            ", continuation"
        } else {
            ""
        }
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sweep = args.iter().any(|a| a == "--sweep");
    let show_impure = args.iter().any(|a| a == "--show-impure");
    let text_arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let backends = text_arg("--backends").unwrap_or_else(|| "lexical,minilm".into());
    let corpora = text_arg("--corpus").unwrap_or_else(|| "seed,other,third".into());
    let arg = |name: &str| text_arg(name).and_then(|v| v.parse::<f64>().ok());
    let min_duration_ms = arg("--min-duration").map_or(60_000, |s| (s * 1000.0) as i64);
    let outliers = arg("--outliers").unwrap_or(0.04);
    let background = args.iter().any(|a| a == "--background");
    let no_learning = args.iter().any(|a| a == "--no-learning");
    let split_confirm = arg("--split-confirm").map_or(2, |n| (n as usize).max(1));
    let threshold_arg = arg("--threshold").map(|t| t as f32);
    let normalizer = Normalizer::default();
    let mut models: HashMap<String, Box<dyn Embedder>> = HashMap::new();
    for name in corpora.split(',') {
        let (corpus, seed, default_min_scene, default_cameras, scenes_per_camera) = match name {
            "seed" => (&SEED_CORPUS, 0x5eed_cafe, 120.0, 40, 25),
            "other" => (&OTHER_CORPUS, 0x0dd_ba11, 10.0, 16, 40),
            "third" => (&THIRD_CORPUS, 0x3d_c0ffee, 10.0, 12, 45),
            other => {
                eprintln!("unknown corpus {other} (seed, other, third)");
                continue;
            }
        };
        let min_scene_ms = arg("--min-scene")
            .map_or(default_min_scene * 1000.0, |s| s * 1000.0)
            .clamp(1_000.0, corpus.max_scene_ms as f64 - 1_000.0) as u64;
        let cameras = arg("--cameras").map_or(default_cameras, |n| (n as usize).max(1));
        let mut streams = generate(
            corpus,
            cameras,
            scenes_per_camera,
            seed,
            outliers,
            min_scene_ms,
            background,
        );
        for s in &mut streams {
            for c in s.iter_mut() {
                c.input.norm = normalizer.normalize(&c.input.text);
            }
        }
        let distinct: Vec<String> = {
            let mut set: Vec<String> = streams
                .iter()
                .flatten()
                .map(|c| c.input.norm.clone())
                .collect();
            set.sort();
            set.dedup();
            set
        };
        let total: usize = streams.iter().map(Vec::len).sum();
        let scene_count: usize = streams.len() * scenes_per_camera;
        println!(
            "\n{} corpus: {} cameras, {scene_count} true scenes of {}–{} s, {:.0} % outlier captions, {total} captions ({} distinct after normalising), min_duration {} s{}\n",
            corpus.name,
            streams.len(),
            min_scene_ms / 1000,
            corpus.max_scene_ms / 1000,
            outliers * 100.0,
            distinct.len(),
            min_duration_ms / 1000,
            if background {
                "; every other scene the background (the first scene type), the ones between up to 60 s"
            } else {
                ""
            }
        );
        println!(
            "| corpus | backend | threshold | captions | events | reduction | purity | fragmentation |"
        );
        println!("|---|---|---:|---:|---:|---:|---:|---:|");
        for backend in backends.split(',') {
            if !models.contains_key(backend) {
                let embedder: Box<dyn Embedder> = match backend {
                    "lexical" => Box::new(LexicalEmbedder::default()),
                    "minilm" => match MiniLm::from_default_location() {
                        Ok(m) => Box::new(m),
                        Err(e) => {
                            eprintln!("minilm: {e}");
                            continue;
                        }
                    },
                    other => {
                        eprintln!("unknown backend {other}");
                        continue;
                    }
                };
                models.insert(backend.to_string(), embedder);
            }
            let embedder = models.get_mut(backend).expect("inserted above");
            let refs: Vec<&str> = distinct.iter().map(String::as_str).collect();
            let vectors: HashMap<String, Vec<f32>> = distinct
                .iter()
                .cloned()
                .zip(embedder.embed(&refs).expect("embedding"))
                .collect();
            let default = match backend {
                "minilm" => Backend::Minilm,
                _ => Backend::Lexical,
            }
            .default_threshold();
            let thresholds: Vec<f32> = if sweep {
                (5..=19).map(|i| i as f32 * 0.05).collect()
            } else {
                vec![threshold_arg.unwrap_or(default)]
            };
            for threshold in thresholds {
                let config = GroupingConfig {
                    similarity_threshold: threshold,
                    min_duration_ms,
                    split_confirm,
                    ..GroupingConfig::default()
                };
                let learn = backend == "lexical" && !no_learning;
                let s = evaluate(&streams, &config, &vectors, learn, show_impure);
                println!(
                    "| {} | {backend} | {threshold:.2} | {} | {} | {:.1} % | {:.3} | {:.2} |",
                    corpus.name,
                    s.captions,
                    s.events,
                    s.reduction * 100.0,
                    s.purity,
                    s.fragmentation
                );
            }
        }
    }
}
