"""The offline fallback's words: detail slots per kind of thing and per kind of place.

Written from the built-in presets (presets/entities.json, presets/locations.json): the same
parts in the same order (hair, build, clothes, shoes for a person; coat, ears, tail, eyes for an
animal; ground, features, sky for a place) and mostly the same phrases, generalised so that they
fit any member of the kind. The presets themselves are used too (backend/prompt_help/fallback.py):
a description naming a preset's thing ("a dog") starts from that preset's details.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Slot:
    """One part of a description. `covers`: words meaning the user already described it (the slot
    is then left out); `colour`: it gives the thing's own colour, left out when the user did."""

    options: tuple[str, ...]
    covers: frozenset[str] = frozenset()
    colour: bool = False


def _slot(options: str, covers: str = "", colour: bool = False) -> Slot:
    return Slot(tuple(o.strip() for o in options.split(";")), frozenset(covers.split()), colour)


COLOURS = frozenset(
    """red orange yellow green blue purple violet pink brown black white gray grey silver gold golden beige
    cream tan chestnut auburn blond blonde crimson navy teal turquoise maroon olive ivory bronze copper khaki
    sandy charcoal ginger tawny""".split()
)
# Nouns of a thing's whole surface: a phrase naming one with a colour gives the thing's colour.
SURFACES = frozenset(
    "coat fur skin feathers plumage body paint scales hair finish armor armour plates plating shell hide".split()
)

# --- entities -----------------------------------------------------------------------------------

_HAIR = _slot(
    "short dark hair; curly brown hair; a long auburn braid; a high black ponytail; neatly combed gray hair;"
    "shoulder-length black hair; messy blond hair; a shaved head",
    "hair braid ponytail bald beard dreadlocks curls head hat helmet cap hood visor",
)
_BUILD = _slot(
    "lean athletic build; sturdy build; slim build; tall frame; broad shoulders; a stocky frame",
    "build frame tall short slim thin fat muscular stocky skinny lean heavy chubby petite athletic",
)
HUMAN = (
    _HAIR,
    _BUILD,
    _slot(
        "a red sports vest; an orange rain jacket; a charcoal wool suit; an oversized purple hoodie;"
        "a brown tweed jacket; a navy blue coat; a white linen shirt; a green knitted sweater",
        "jacket coat shirt t-shirt hoodie vest suit dress sweater jumper blouse uniform armor armour robe cloak gown "
        "overalls costume spacesuit tunic top raincoat parka tuxedo",
    ),
    _slot(
        "black tights; khaki hiking shorts; gray flannel trousers; baggy white trousers; dark blue jeans;"
        "brown corduroy trousers",
        "trousers pants jeans shorts skirt leggings tights dress suit uniform robe gown overalls spacesuit armor "
        "armour tuxedo",
    ),
    _slot(
        "neon yellow trainers; brown leather boots; polished black shoes; red high-top sneakers; white sneakers;"
        "muddy hiking boots",
        "shoes boots sneakers trainers sandals heels slippers barefoot feet",
    ),
    _slot(
        "a green backpack; a flat cap; a wooden cane; a blue tie; a leather satchel; round glasses",
        "backpack bag cap hat cane tie satchel glasses umbrella scarf",
    ),
)

# People whose outfit says what they are (a knight, a nurse): details of their outfit, not a hoodie.
COSTUMED = (
    _HAIR,
    _BUILD,
    _slot(
        "a long dark cloak; a weathered leather belt; a wide embroidered sash; heavy leather gloves;"
        "a richly decorated outfit; a neatly pressed uniform",
        "cloak belt sash gloves outfit uniform",
    ),
    _slot("a worn leather satchel; a polished metal badge; a small pouch at the hip", "satchel badge pouch"),
    _slot("worn leather boots; heavy black boots; soft leather shoes", "boots shoes sandals feet"),
)

MAMMAL = (
    _slot(
        "a glossy chestnut coat; dense gray and cream fur; a short sandy coat; shaggy dark brown fur;"
        "a thick black coat; spotted brown and white fur; a sleek ginger coat",
        "coat fur hide skin",
        colour=True,
    ),
    _slot("upright pointed ears; floppy ears; small rounded ears; large alert ears", "ear ears"),
    _slot("a bushy tail; a long thin tail; a short fluffy tail; a black-tipped tail", "tail"),
    _slot("a pale cream belly; a white patch on its chest; a dark muzzle; a thick neck", "belly chest muzzle neck"),
    _slot("strong muscular legs; long slender legs; short sturdy legs; white paws", "legs leg paws paw"),
    _slot("pale amber eyes; dark glossy eyes; bright green eyes; small dark eyes", "eye eyes"),
)

BIRD = (
    _slot(
        "glossy black feathers; bright green and yellow plumage; speckled brown feathers; snow white feathers;"
        "blue-gray plumage",
        "feather feathers plumage",
        colour=True,
    ),
    _slot("a curved orange beak; a short sharp beak; a long yellow bill; a hooked black beak", "beak bill"),
    _slot("broad wings folded at its sides; white wing tips; long dark flight feathers", "wing wings"),
    _slot("a small crest on its head; a bright red throat; a fan of tail feathers", "crest throat"),
    _slot("thin pink legs; scaly yellow feet; long bare legs", "legs leg feet"),
    _slot("round black eyes; sharp golden eyes; bright orange eyes", "eye eyes"),
)

REPTILE = (
    _slot(
        "rough green scales; dark olive scaly skin; glossy emerald scales; sandy brown scales",
        "scale scales skin",
        colour=True,
    ),
    _slot("a ridge of spikes along its back; a row of bony plates on its back; a smooth domed back", "spike spikes"),
    _slot("short curved claws; four stubby legs; strong clawed feet", "claw claws legs feet"),
    _slot("a long heavy tail; a thick tapering tail", "tail"),
    _slot("yellow slit-pupil eyes; small black eyes; bright amber eyes", "eye eyes"),
)

ROBOT = (
    _slot(
        "a matte white body; polished silver armor plates; a glossy orange shell; olive green armor plating;"
        "a scuffed gray metal body; a matte yellow body",
        "body armor armour plates plating shell",
        colour=True,
    ),
    _slot("glowing blue eyes; a single red sensor eye; green status lights; a visor of white lights", "eye eyes visor"),
    _slot("black rubber joints; exposed hydraulic pistons; riveted seams; thick cables at its joints", "joint joints"),
    _slot("long jointed arms; pincer hands; thin metal legs; heavy clawed feet", "arm arms hand hands legs leg"),
    _slot("a boxy sensor head; a round glass dome head; antenna ears; a small radar dish", "head antenna"),
)

VEHICLE = (
    _slot(
        "glossy red paint; a matte black finish; a cream and sky blue paint job; sand-colored paint;"
        "dark green paint; pearl white paint",
        "paint finish",
        colour=True,
    ),
    _slot("a low curved body; a tall boxy body; rounded fenders; a long flat hood", "body fenders hood"),
    _slot("tinted windows; a wide windshield; a lit roof sign; a roof rack", "window windows windshield roof"),
    _slot("chrome hubcaps; shiny alloy wheels; oversized knobby tires; black steel rims", "wheel wheels tire tires"),
    _slot("narrow headlights; round headlights; a chrome front grille; red tail lights", "headlight headlights grille"),
    _slot("a dented rear bumper; mud-splashed doors; a spare wheel on the back; a black roll bar", "bumper doors"),
)

CYCLE = (
    _slot(
        "a glossy black frame; a bright red frame; a matte green frame; a chrome frame",
        "frame",
        colour=True,
    ),
    _slot("a glossy black fuel tank; a wicker front basket; a small front fairing", "tank basket"),
    _slot("chrome handlebars; wide black handlebars; curved drop handlebars", "handlebar handlebars"),
    _slot("thin spoked wheels; fat knobby tires; chrome exhaust pipes", "wheel wheels tire tires exhaust"),
    _slot("a brown leather seat; a rider in a white helmet; a rider in a black leather jacket", "seat rider"),
)

ABSTRACT = (
    # For fire, water, smoke, ... the body comes from ABSTRACT_BODIES instead.
    _slot(
        "a translucent glowing body; a body of drifting pale light; a shimmering see-through form",
        "body form",
        colour=True,
    ),
    _slot("a bright glowing core; a faint pulsing heart of light; a dense bright center", "core heart center"),
    _slot("frayed drifting edges; softly flickering edges; blurred shifting edges", "edge edges"),
    _slot("trailing wisps of mist; a faint shimmer in the air around it; thin ribbons of light", "trail wisps"),
    _slot("a soft glowing halo around it; a vaguely human outline; two faint glowing eyes", "halo outline eyes"),
)

THING = (
    _slot(
        "a matte white finish; a weathered wooden surface; a glossy red finish; a brushed steel body;"
        "a dark green painted surface",
        "finish surface body",
        colour=True,
    ),
    _slot("rounded edges; sharp clean edges; a chunky solid shape; a slim upright shape", "edge edges shape"),
    _slot("brass fittings; black rubber trim; small chrome details; painted white stripes", "trim details"),
    _slot("a sturdy base; four short legs; a heavy square base", "base legs"),
    _slot("fine visible scratches; a faint layer of dust; a few worn patches", "scratches dust"),
)

ABSTRACT_BODIES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("fire", "flame", "flames", "flaming", "fiery"), ("a body of roaring orange and yellow flames",)),
    **dict.fromkeys(("water", "wave"), ("a body of rippling blue water", "a translucent body of clear water")),
    **dict.fromkeys(("smoke", "shadow", "smoky"), ("a body of inky black smoke", "a body of thick gray smoke")),
    **dict.fromkeys(
        ("ghost", "phantom", "wraith", "spectre", "specter", "spectral", "ghostly"),
        ("a pale translucent body", "a body of faint white mist"),
    ),
    **dict.fromkeys(
        ("lightning", "energy", "plasma", "orb"),
        ("a body of crackling violet and white electricity", "a core of bright blue plasma"),
    ),
    **dict.fromkeys(
        ("wind", "cloud", "mist", "fog", "storm", "tornado", "wisp"),
        ("a body of swirling pale gray dust", "a body of drifting white mist"),
    ),
}

# Phrases that only fit one animal or thing, offered first when the user names it.
EXTRAS: dict[str, tuple[str, ...]] = {
    "dragon": ("large leathery wings", "curved ivory horns"),
    "dinosaur": ("powerful hind legs", "short clawed arms"),
    "unicorn": ("a spiral golden horn", "a flowing white mane"),
    "horse": ("a long flowing mane",),
    "pony": ("a long flowing mane",),
    "lion": ("a thick golden mane",),
    "cat": ("long white whiskers",),
    "kitten": ("long white whiskers",),
    "turtle": ("a domed brown shell",),
    "tortoise": ("a domed brown shell",),
    "elephant": ("a thick trunk hanging low", "long curved ivory tusks", "huge rounded ears"),
    "camel": ("a single tall hump",),
    "rhino": ("a large curved horn",),
    "rhinoceros": ("a large curved horn",),
    "giraffe": ("a very long neck",),
    "zebra": ("bold black and white stripes",),
    "tiger": ("bold black stripes",),
    "deer": ("branching antlers",),
    "moose": ("broad flat antlers",),
    "peacock": ("a fan of shimmering blue tail feathers",),
    "penguin": ("a white belly",),
    "tank": ("a long gun barrel", "wide caterpillar tracks"),
    "train": ("a long row of carriages",),
}

ENTITY_KINDS: dict[str, tuple[str, tuple[Slot, ...], frozenset[str]]] = {
    # kind: (the presets' category it belongs to, its slots, the nouns that name it)
    "human": (
        "human",
        HUMAN,
        frozenset(
            """man woman boy girl child kid person lady gentleman guy teenager teen baby toddler dancer runner
            jogger hiker athlete player worker farmer student businessman businesswoman tourist skater skateboarder
            cyclist climber waiter waitress mother father grandmother grandfather granny grandma grandpa elder
            scientist detective robber thief spy musician guitarist singer boxer fighter surfer skier hunter
            fisherman postman mailman builder explorer traveler traveller commuter shopper pedestrian juggler
            cheerleader footballer golfer rider""".split()
        ),
    ),
    "costumed": (
        "human",
        COSTUMED,
        frozenset(
            """soldier knight astronaut officer policeman policewoman firefighter doctor nurse chef cowboy cowgirl
            pirate ninja samurai wizard witch king queen princess prince clown monk priest referee zombie vampire elf
            dwarf warrior viking gladiator superhero ballerina diver archer sailor pilot paramedic hero villain mime
            acrobat guard butler maid jester""".split()
        ),
    ),
    "mammal": (
        "animal",
        MAMMAL,
        frozenset(
            """dog puppy cat kitten fox wolf bear lion lioness tiger leopard cheetah jaguar panther cougar lynx rabbit
            hare deer stag doe horse pony foal cow bull calf ox goat sheep lamb ram pig boar monkey ape gorilla
            chimpanzee panda raccoon squirrel kangaroo zebra giraffe elephant rhino rhinoceros hippo hippopotamus
            camel llama alpaca donkey mule mouse rat otter badger hedgehog moose elk bison buffalo hyena koala sloth
            meerkat mongoose weasel ferret beaver porcupine reindeer antelope gazelle unicorn animal mammal hound
            retriever terrier poodle labrador bulldog husky collie shepherd dachshund""".split()
        ),
    ),
    "bird": (
        "animal",
        BIRD,
        frozenset(
            """bird parrot eagle owl crow raven pigeon dove duck goose swan chicken hen rooster penguin flamingo
            ostrich emu peacock seagull gull hawk falcon sparrow robin stork heron turkey pelican toucan vulture
            crane macaw""".split()
        ),
    ),
    "reptile": (
        "animal",
        REPTILE,
        frozenset(
            """lizard snake crocodile alligator turtle tortoise dinosaur dragon iguana chameleon gecko komodo frog
            toad raptor t-rex trex""".split()
        ),
    ),
    "robot": (
        "robot",
        ROBOT,
        frozenset("robot android droid cyborg mech drone bot automaton machine robotic mechanical".split()),
    ),
    "vehicle": (
        "vehicle",
        VEHICLE,
        frozenset(
            """car truck bus van taxi cab jeep suv tractor tank train tram ambulance firetruck limousine limo pickup
            sedan convertible racecar kart trailer forklift bulldozer excavator lorry wagon carriage cart
            minivan coupe hatchback roadster buggy tuk-tuk rickshaw vehicle""".split()
        ),
    ),
    "cycle": (
        "vehicle",
        CYCLE,
        frozenset("bicycle bike motorcycle motorbike scooter moped unicycle tricycle e-bike".split()),
    ),
    "abstract": (
        "abstract",
        ABSTRACT,
        frozenset(
            """fire flame flames water smoke shadow ghost spirit light lightning wind cloud mist fog energy plasma
            orb elemental aura storm tornado phantom wraith spectre specter wisp""".split()
        ),
    ),
}
# Words before the noun that change what the thing is made of ("robot dog", "ghost horse").
MODIFIER_KINDS = {
    **dict.fromkeys("robot robotic mechanical android cyborg clockwork".split(), "robot"),
    **dict.fromkeys(
        "ghost ghostly fire flaming fiery smoke smoky shadow spirit lightning spectral".split(), "abstract"
    ),
}
THING_KIND = ("", THING)
# When everything else is left out, a few details that fit any entity, to reach the range.
ENTITY_FILL = ("clear distinct details", "a sharp outline", "natural proportions", "a solid sense of weight")

# --- locations ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """A kind of place: the words naming it, its features and where the light comes from."""

    nouns: frozenset[str]
    features: tuple[str, ...]
    setting: str  # "outdoor", "indoor" or "space": which endings fit


def _place(nouns: str, features: str, setting: str = "outdoor") -> Place:
    return Place(frozenset(nouns.split()), tuple(f.strip() for f in features.split(";")), setting)


PLACES = (
    _place(
        "desert dune dunes sand sahara",
        "golden sand dunes; wind-rippled sand; scattered dry shrubs; sun-bleached rocks; a distant rocky ridge",
    ),
    _place(
        "forest wood woods woodland grove",
        "tall birch trees; fallen leaves on the ground; mossy fallen logs; ferns between the trunks;a narrow dirt path",
    ),
    _place(
        "jungle rainforest",
        "giant ferns; hanging vines; misty shafts of sunlight; dense green foliage; twisted roots",
    ),
    _place(
        "beach shore coast seaside coastline",
        "wet sand; gentle waves; scattered seashells; dry dune grass; a low wooden boardwalk",
    ),
    _place(
        "meadow field grassland prairie savanna pasture steppe",
        "tall green grass; scattered wildflowers; rolling hills; scattered oak trees; a wooden fence",
    ),
    _place(
        "snow snowy tundra arctic winter glacier ice icy frozen",
        "deep snow drifts; frosted pine trees; flat white plains; blue ice ridges; distant frozen mountains",
    ),
    _place(
        "mountain mountains hill hills cliff cliffs valley canyon gorge",
        "layered red cliffs; rocky slopes; a dry sandy riverbed; scattered boulders; distant snowy peaks",
    ),
    _place(
        "swamp marsh bog wetland", "murky water; twisted cypress trees; hanging moss; tall reeds; low drifting mist"
    ),
    _place(
        "lake river pond riverbank lakeside stream creek",
        "calm gray water; tall reeds; smooth pebbles; a wooden jetty; willow trees along the bank",
    ),
    _place(
        "street city avenue downtown alley crosswalk crossing boulevard sidewalk intersection",
        "glass office towers; parked cars; wide sidewalks; traffic lights; shop fronts with awnings",
    ),
    _place("square plaza", "neon signs; wet reflective pavement; a stone fountain; cafe tables; iron lamp posts"),
    _place(
        "village town hamlet",
        "stone houses; wooden balconies; a cobbled square; flower boxes; a small church tower",
    ),
    _place(
        "harbor harbour port dock docks quay pier marina wharf",
        "moored fishing boats; stacked wooden crates; calm gray water; rusty bollards; coiled ropes",
    ),
    _place(
        "parking lot garage carpark",
        "white painted lines; parked cars; concrete pillars; a low barrier; tall lamp posts",
    ),
    _place(
        "factory warehouse hangar workshop plant mill",
        "rusty machines; broken skylights; a cracked concrete floor; steel beams; stacked pallets",
        "indoor",
    ),
    _place(
        "mall lobby hall atrium station airport terminal office hotel",
        "polished marble floors; glass railings; bright shop windows; tall columns; potted plants",
        "indoor",
    ),
    _place(
        "gym gymnasium court arena",
        "a polished wooden floor; basketball hoops; painted court lines; folded bleachers; high windows",
        "indoor",
    ),
    _place(
        "stadium track racetrack",
        "red running lanes; empty stands; white painted lines; tall floodlights; a green infield",
    ),
    _place(
        "ruins ruin temple castle ancient fortress",
        "weathered stone columns; moss-covered steps; crumbling walls; scattered carved blocks; vines over the arches",
    ),
    _place(
        "moon lunar mars martian planet asteroid crater",
        "gray dust; shallow craters; scattered rocks; a low distant horizon; long black shadows",
        "space",
    ),
    _place("volcano volcanic lava", "black rock; glowing cracks of lava; drifting ash; steaming vents; jagged ridges"),
    _place(
        "garden park rooftop courtyard backyard yard terrace",
        "potted trees; wooden decking; trimmed hedges; gravel paths; a city skyline behind",
    ),
    _place(
        "road highway countryside farm farmland ranch",
        "wheat fields; telegraph poles; a red farmhouse; a wooden fence; round hay bales",
    ),
    _place(
        "room corridor hallway kitchen library museum classroom studio bedroom basement interior apartment house",
        "a polished wooden floor; white walls; tall windows; a soft woven rug; framed pictures on the walls",
        "indoor",
    ),
)
OPEN_GROUND = _place("", "open flat ground; scattered rocks; low bushes; a distant tree line; a wide open horizon")

# How the light falls, by setting and by the time of day the user named (if any).
TIMES = {
    "night": frozenset("night midnight nighttime moonlit starry dark".split()),
    "dusk": frozenset("sunset dusk evening twilight sundown".split()),
    "dawn": frozenset("dawn sunrise morning daybreak".split()),
    "day": frozenset("noon midday afternoon day daytime sunny bright".split()),
    "weather": frozenset("rain rainy storm stormy fog foggy mist misty overcast cloudy snowing drizzle".split()),
}
ENDINGS = {
    ("outdoor", ""): (
        "under a clear blue sky",
        "on a bright afternoon",
        "in soft morning light",
        "under a pale overcast sky",
        "in warm evening light",
    ),
    ("outdoor", "night"): ("under a dark starry sky", "lit by a pale full moon", "under a black night sky"),
    ("outdoor", "dusk"): ("under a glowing orange sky", "in low golden light"),
    ("outdoor", "dawn"): ("in soft pink light", "under a pale dawn sky"),
    ("outdoor", "day"): ("under a clear blue sky", "with short sharp shadows"),
    ("outdoor", "weather"): ("under a heavy gray sky", "in flat gray light"),
    ("indoor", ""): ("under bright ceiling lights", "in soft daylight from high windows", "lit by warm hanging lamps"),
    ("indoor", "night"): ("lit by warm hanging lamps", "under dim ceiling lights"),
    ("space", ""): ("under a black starry sky", "in harsh white sunlight"),
}
LOCATION_FILL = ("a wide open view", "plenty of open space", "a few scattered stones")
