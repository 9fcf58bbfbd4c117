"""The word tables of the `tldr` task: topics (subreddits) with their roles, intros, problems and
asks; distractor sentences; names; the phrases a noisy writer adds. The generator (summarization.py)
draws posts and summaries from them, and the judge (summarization_judge.py) reads its lexicon of
fact words and its fluent phrases from them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """A problem: its summary phrase, the post sentence stating it, an elaboration, and its key
    words."""
    phrase: str
    sentence: str
    elaboration: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Ask:
    """What the poster asks: the phrase (ends with '?') and its key words."""
    phrase: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Detail:
    """A distractor: an irrelevant post sentence, the clause a careless summary would copy, key
    words."""
    sentence: str
    clause: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Subreddit:
    """One topic: the roles a post can be about, intro templates, problems and topic-specific
    asks."""
    roles: tuple[str, ...]
    intros: tuple[str, ...]
    problems: tuple[Problem, ...]
    asks: tuple[Ask, ...]
    pets: bool = False


P, A, D = Problem, Ask, Detail
SUBREDDITS: dict[str, Subreddit] = {
    "relationships": Subreddit(
        ("boyfriend", "girlfriend", "husband", "wife"),
        (
            "My {role} {name} and I have been together for {years} years .",
            "I live with my {role} {name} in a small flat .",
        ),
        (
            P(
                "never texts me back",
                "{name} never texts me back during the day .",
                "Sometimes I wait for hours and get no answer .",
                ("texts",),
            ),
            P(
                "forgot my birthday",
                "{name} forgot my birthday this year .",
                "Everyone else remembered it and sent me a card .",
                ("forgot", "birthday"),
            ),
            P(
                "flirts with other people",
                "At parties {name} flirts with other people .",
                "It happened again last weekend right in front of me .",
                ("flirts",),
            ),
            P(
                "plays video games all night",
                "{name} plays video games all night .",
                "We barely talk anymore because of it .",
                ("video", "games"),
            ),
        ),
        (
            A("should I break up ?", ("break",)),
            A("do they deserve another chance ?", ("chance",)),
            A("is this a red flag ?", ("red", "flag")),
        ),
    ),
    "roommates": Subreddit(
        ("roommate", "housemate", "flatmate"),
        (
            "I share an apartment with my {role} {name} .",
            "My {role} {name} moved in with me {years} months ago .",
        ),
        (
            P(
                "keeps eating my food",
                "{name} keeps eating my food .",
                "I buy groceries every week and they are gone in two days .",
                ("eating", "food"),
            ),
            P(
                "plays loud music at night",
                "{name} plays loud music at night .",
                "I have to wake up early for my shift .",
                ("loud", "music"),
            ),
            P(
                "never pays rent on time",
                "{name} never pays rent on time .",
                "I end up covering the whole amount myself .",
                ("rent",),
            ),
            P(
                "leaves dirty dishes everywhere",
                "{name} leaves dirty dishes everywhere .",
                "The whole place smells bad now .",
                ("dirty", "dishes"),
            ),
        ),
        (
            A("should I move out ?", ("move",)),
            A("how do I confront them ?", ("confront",)),
            A("should I tell the landlord ?", ("landlord",)),
        ),
    ),
    "work": Subreddit(
        ("boss", "manager", "coworker", "supervisor"),
        (
            "I started a new job and my {role} is {name} .",
            "I have worked with my {role} {name} for {years} years .",
        ),
        (
            P(
                "takes credit for my ideas",
                "{name} takes credit for my ideas .",
                "Last month my whole project was presented as theirs .",
                ("credit", "ideas"),
            ),
            P(
                "yells at me in meetings",
                "{name} yells at me in meetings .",
                "Everyone just looks away when it happens .",
                ("yells", "meetings"),
            ),
            P(
                "ignores my emails",
                "{name} ignores my emails .",
                "I sent five reminders about the same thing .",
                ("ignores", "emails"),
            ),
            P(
                "gives me extra tasks",
                "{name} gives me extra tasks every day .",
                "I stay late almost every evening .",
                ("extra", "tasks"),
            ),
        ),
        (
            A("should I quit ?", ("quit",)),
            A("should I go to HR ?", ("hr",)),
            A("should I report it ?", ("report",)),
        ),
    ),
    "pets": Subreddit(
        ("dog", "puppy", "cat", "kitten"),
        ("I adopted a {role} named {name} last year .", "We have a {role} called {name} at home ."),
        (
            P(
                "scratches the furniture",
                "{name} scratches the furniture .",
                "The sofa is already ruined .",
                ("scratches", "furniture"),
            ),
            P(
                "bites my hands",
                "{name} bites my hands when I play .",
                "It hurts and sometimes it bleeds .",
                ("bites", "hands"),
            ),
            P(
                "refuses to eat",
                "{name} refuses to eat .",
                "The bowl stays full for days .",
                ("refuses",),
            ),
            P(
                "hides under the bed",
                "{name} hides under the bed all day .",
                "I only see them late at night .",
                ("hides", "bed"),
            ),
        ),
        (
            A("should I see a vet ?", ("vet",)),
            A("should I call a behaviorist ?", ("behaviorist",)),
            A("how do I stop this ?", ("stop",)),
        ),
        pets=True,
    ),
    "college": Subreddit(
        ("professor", "lecturer", "advisor", "instructor"),
        (
            "This semester I have a {role} named {name} .",
            "I am in my second year and my {role} is {name} .",
        ),
        (
            P(
                "graded my exam unfairly",
                "{name} graded my exam unfairly .",
                "I got a much lower grade than my friends .",
                ("graded", "exam"),
            ),
            P(
                "never answers my questions",
                "{name} never answers my questions .",
                "I ask after every lecture and get nothing .",
                ("answers", "questions"),
            ),
            P(
                "lost my essay",
                "{name} lost my essay .",
                "It was worth half of my grade .",
                ("lost", "essay"),
            ),
            P(
                "cancels class without warning",
                "{name} cancels class without warning .",
                "I drive an hour to campus for nothing .",
                ("cancels", "class"),
            ),
        ),
        (
            A("should I drop the course ?", ("drop",)),
            A("should I email the dean ?", ("dean",)),
            A("should I file a complaint ?", ("complaint",)),
        ),
    ),
    "family": Subreddit(
        ("mom", "dad", "sister", "brother", "aunt"),
        (
            "My {role} {name} lives ten minutes away from us .",
            "I have always been close with my {role} {name} .",
        ),
        (
            P(
                "reads my private messages",
                "{name} reads my private messages .",
                "I found out when they quoted one to me .",
                ("reads", "messages"),
            ),
            P(
                "criticizes my cooking",
                "{name} criticizes my cooking at every dinner .",
                "Nothing I make is ever good enough .",
                ("criticizes", "cooking"),
            ),
            P(
                "visits without calling first",
                "{name} visits without calling first .",
                "Sometimes it is very early in the morning .",
                ("visits", "calling"),
            ),
            P(
                "tells my secrets to everyone",
                "{name} tells my secrets to everyone .",
                "Now the whole family knows about my job interview .",
                ("secrets",),
            ),
        ),
        (
            A("should I cut contact ?", ("cut", "contact")),
            A("how do I set boundaries ?", ("boundaries",)),
            A("should I see a therapist ?", ("therapist",)),
        ),
    ),
    "personalfinance": Subreddit(
        ("friend", "cousin", "neighbor", "uncle"),
        (
            "My {role} {name} and I have known each other for {years} years .",
            "I get along well with my {role} {name} .",
        ),
        (
            P(
                "owes me five hundred dollars",
                "{name} owes me five hundred dollars .",
                "It has been a year since I lent it .",
                ("owes", "dollars"),
            ),
            P(
                "wants a loan from me",
                "{name} wants a loan from me .",
                "It is for a new truck .",
                ("loan",),
            ),
            P(
                "never splits the bill",
                "{name} never splits the bill when we eat out .",
                "I always end up paying for both of us .",
                ("splits", "bill"),
            ),
            P(
                "wants money for a startup",
                "{name} wants money for a startup .",
                "It would take most of my savings .",
                ("startup",),
            ),
        ),
        (
            A("should I take legal action ?", ("legal",)),
            A("how do I refuse politely ?", ("refuse", "politely")),
            A("should I just forgive it ?", ("forgive",)),
        ),
    ),
    "fitness": Subreddit(
        ("trainer", "coach", "teammate"),
        ("I go to the gym with my {role} {name} .", "My {role} {name} plans all my workouts ."),
        (
            P(
                "makes me lift too heavy",
                "{name} makes me lift too heavy .",
                "My back has been sore for weeks .",
                ("lift", "heavy"),
            ),
            P(
                "skips our sessions",
                "{name} skips our sessions without telling me .",
                "I wait at the gym for nothing .",
                ("skips", "sessions"),
            ),
            P(
                "laughs at my form",
                "{name} laughs at my form .",
                "Other people at the gym can hear it .",
                ("laughs", "form"),
            ),
            P(
                "wants me to take supplements",
                "{name} wants me to take supplements .",
                "They are expensive and I do not trust them .",
                ("supplements",),
            ),
        ),
        (
            A("should I switch programs ?", ("switch", "programs")),
            A("is this normal ?", ("normal",)),
            A("should I work out alone ?", ("alone",)),
        ),
    ),
}
COMMON_ASKS = (A("am I overreacting ?", ("overreacting",)), A("should I bring it up ?", ("bring",)))
DISTRACTORS = (
    D("I work at a bakery downtown .", "I work at a bakery", ("bakery",)),
    D("My car has been making a weird noise .", "my car is making a noise", ("car", "noise")),
    D("It has been raining all week here .", "it has been raining", ("raining",)),
    D("I started learning the guitar in March .", "I am learning guitar", ("guitar",)),
    D("We painted the kitchen blue last month .", "we painted the kitchen", ("painted", "kitchen")),
    D("I have a trip to Spain next month .", "I am going to Spain", ("spain",)),
    D("My phone screen is cracked .", "my phone is cracked", ("phone", "cracked")),
    D("I usually run in the park on Saturdays .", "I run in the park", ("park",)),
    D("My grandmother taught me how to knit .", "I can knit", ("knit",)),
    D("The bus to my place is always late .", "my bus is always late", ("bus",)),
    D("I am reading a long fantasy novel .", "I am reading a novel", ("novel",)),
    D("My plants on the balcony are doing well .", "my plants are doing well", ("plants",)),
    D("I had pizza for dinner yesterday .", "I had pizza", ("pizza",)),
    D("I just got a short haircut .", "I got a haircut", ("haircut",)),
    D("My laptop is very old and slow .", "my laptop is old", ("laptop",)),
    D("There is a nice coffee shop near my place .", "there is a coffee shop nearby", ("coffee",)),
    D("I am saving up for a new bike .", "I am saving for a bike", ("bike",)),
    D("My hometown is a small town by the sea .", "my hometown is by the sea", ("hometown", "sea")),
    D("I volunteer at the library on Fridays .", "I volunteer at the library", ("library",)),
    D("My favorite color is green .", "I like green", ("green",)),
    D("I am learning to speak French .", "I am learning French", ("french",)),
    D("We watched a scary movie on Friday .", "we watched a movie", ("movie",)),
    D("I have been drinking more tea lately .", "I drink tea", ("tea",)),
    D("My apartment is very sunny .", "my apartment is sunny", ("sunny",)),
)
NAMES = (
    "Sam",
    "Alex",
    "Jordan",
    "Taylor",
    "Chris",
    "Jamie",
    "Morgan",
    "Casey",
    "Riley",
    "Drew",
    "Kim",
    "Robin",
)
PET_NAMES = ("Max", "Bella", "Luna", "Buddy", "Daisy", "Milo", "Coco", "Rocky")
YEARS = ("two", "three", "four", "six")
FEELINGS = ("It really bothers me .", "I am so tired of this .", "I have tried to be patient .",
            "This has been going on for months .", "I feel like I am going crazy .")
ASK_LEADS = ("So", "So my question is ,", "Honestly ,", "Anyway ,", "Reddit ,")
VAGUE_MAIN = "having problems with"  # what a summary says about a post whose problem it leaves out
FILLER_PREFIXES = ("long story short ,", "so basically", "ok so")
FILLER_SUFFIXES = ("and it is really getting to me", "and I do not know what to do", "please help")
