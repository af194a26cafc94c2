#!/usr/bin/env python3
"""Writes Tiller's own small data sets (deterministic; standard library only).

    python3 datasets/make_sets.py            # from the repository root

- datasets/sft/{train,eval}.jsonl          chat examples in TRL's `messages` form
- datasets/preferences/{train,eval}.jsonl  `prompt`/`chosen`/`rejected` in conversational form
- datasets/prompts/train.jsonl             `prompt` rows (conversational) for RL and annotation

The assistant's style is deliberately consistent so a fine-tuned model shows it: it
answers directly in one or two short sentences, restates the subject, and ends with a
full stop; no filler ("Great question!"), no hedging, no refusals of harmless requests.
In the preference sets `chosen` is that answer and `rejected` is one of: rude, wrong,
a needless refusal, or padded with filler.
"""

import json
import os
import random

import overlap

ROOT = os.path.dirname(os.path.abspath(__file__))
RNG = random.Random(20261124)

CAPITALS = [
    ("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Spain", "Madrid"),
    ("Germany", "Berlin"), ("Canada", "Ottawa"), ("Australia", "Canberra"),
    ("Brazil", "Brasília"), ("Egypt", "Cairo"), ("Kenya", "Nairobi"), ("India", "New Delhi"),
    ("China", "Beijing"), ("Mexico", "Mexico City"), ("Argentina", "Buenos Aires"),
    ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"),
    ("Poland", "Warsaw"), ("Portugal", "Lisbon"), ("Greece", "Athens"), ("Turkey", "Ankara"),
    ("Russia", "Moscow"), ("South Korea", "Seoul"), ("Thailand", "Bangkok"),
    ("Vietnam", "Hanoi"), ("Peru", "Lima"), ("Chile", "Santiago"), ("Ireland", "Dublin"),
    ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Morocco", "Rabat"),
    ("Nigeria", "Abuja"), ("New Zealand", "Wellington"), ("Switzerland", "Bern"),
    ("the Netherlands", "Amsterdam"), ("Denmark", "Copenhagen"), ("Colombia", "Bogotá"),
    ("Indonesia", "Jakarta"), ("Ghana", "Accra"), ("Iceland", "Reykjavík"),
]

WORDS = [
    ("ephemeral", "lasting for a very short time"),
    ("benevolent", "kind and wanting to do good"),
    ("candid", "honest and direct"),
    ("diligent", "careful and hard-working"),
    ("frugal", "careful not to waste money or resources"),
    ("gregarious", "enjoying the company of others"),
    ("meticulous", "paying close attention to every detail"),
    ("nostalgia", "a fond longing for the past"),
    ("obsolete", "no longer in use because something newer replaced it"),
    ("pragmatic", "dealing with things in a practical way"),
    ("resilient", "able to recover quickly from difficulties"),
    ("serene", "calm and peaceful"),
    ("tenacious", "holding firmly to a goal and not giving up"),
    ("ubiquitous", "found everywhere"),
    ("verbose", "using more words than needed"),
    ("whimsical", "playful and fanciful"),
    ("ambiguous", "open to more than one interpretation"),
    ("eloquent", "fluent and persuasive in speaking or writing"),
    ("lucid", "clear and easy to understand"),
    ("mundane", "ordinary and unexciting"),
    ("novice", "a person new to an activity"),
    ("plausible", "reasonable and likely to be true"),
    ("reluctant", "unwilling or hesitant"),
    ("scrutinize", "to examine something closely"),
    ("vivid", "bright, clear and full of detail"),
    ("altruism", "selfless concern for the well-being of others"),
    ("catalyst", "something that speeds up a change"),
    ("empathy", "the ability to share and understand another person's feelings"),
    ("hypothesis", "a proposed explanation that can be tested"),
    ("inevitable", "certain to happen"),
]

SYNONYMS = [
    ("happy", "joyful"), ("big", "large"), ("fast", "quick"), ("smart", "clever"),
    ("angry", "furious"), ("tired", "exhausted"), ("begin", "start"), ("brave", "courageous"),
    ("quiet", "silent"), ("rich", "wealthy"), ("easy", "simple"), ("funny", "amusing"),
    ("sad", "unhappy"), ("strange", "odd"), ("tiny", "minuscule"), ("help", "assist"),
]

ANTONYMS = [
    ("hot", "cold"), ("early", "late"), ("ancient", "modern"), ("generous", "stingy"),
    ("victory", "defeat"), ("expand", "contract"), ("rare", "common"), ("bright", "dim"),
    ("accept", "refuse"), ("heavy", "light"), ("shallow", "deep"), ("arrive", "depart"),
]

TRANSLATIONS = [
    ("thank you", "French", "merci"), ("hello", "Spanish", "hola"),
    ("good night", "French", "bonne nuit"), ("cat", "German", "Katze"),
    ("water", "Spanish", "agua"), ("friend", "Italian", "amico"),
    ("book", "French", "livre"), ("house", "German", "Haus"),
    ("please", "Spanish", "por favor"), ("good morning", "Italian", "buongiorno"),
    ("dog", "French", "chien"), ("bread", "Spanish", "pan"), ("apple", "German", "Apfel"),
    ("goodbye", "Italian", "arrivederci"), ("sun", "Spanish", "sol"),
    ("yes", "German", "ja"), ("school", "French", "école"), ("beach", "Spanish", "playa"),
]

FACTS = [
    ("Why is the sky blue?", "Air molecules scatter blue sunlight more than red light, so the sky looks blue."),
    ("What is photosynthesis?", "Photosynthesis is how plants use sunlight, water and carbon dioxide to make sugar and release oxygen."),
    ("How many planets are in the solar system?", "There are eight planets in the solar system."),
    ("What is the largest planet in the solar system?", "Jupiter is the largest planet in the solar system."),
    ("What is the boiling point of water at sea level?", "Water boils at 100 °C (212 °F) at sea level."),
    ("What gas do humans need to breathe?", "Humans need oxygen to breathe."),
    ("How many bones are in the adult human body?", "An adult human body has 206 bones."),
    ("What is the chemical symbol for gold?", "The chemical symbol for gold is Au."),
    ("What is the speed of light?", "Light travels at about 300,000 kilometres per second in a vacuum."),
    ("Who wrote 'Romeo and Juliet'?", "William Shakespeare wrote 'Romeo and Juliet'."),
    ("Who painted the Mona Lisa?", "Leonardo da Vinci painted the Mona Lisa."),
    ("What is the longest river in the world?", "The Nile is usually listed as the longest river, at about 6,650 kilometres."),
    ("What is the tallest mountain on Earth?", "Mount Everest is the tallest mountain, at 8,849 metres above sea level."),
    ("What causes the seasons?", "The seasons come from the tilt of Earth's axis, which changes how directly sunlight hits each hemisphere."),
    ("What is DNA?", "DNA is the molecule that carries the genetic instructions of living things."),
    ("What is the freezing point of water in Fahrenheit?", "Water freezes at 32 °F."),
    ("How many continents are there?", "There are seven continents."),
    ("What is the smallest prime number?", "The smallest prime number is 2."),
    ("What does a thermometer measure?", "A thermometer measures temperature."),
    ("What is the main ingredient of guacamole?", "The main ingredient of guacamole is avocado."),
    ("How many minutes are in a day?", "A day has 1,440 minutes."),
    ("What is the hardest natural substance?", "Diamond is the hardest natural substance."),
    ("Which organ pumps blood through the body?", "The heart pumps blood through the body."),
    ("What is the largest ocean?", "The Pacific is the largest ocean."),
    ("Who developed the theory of relativity?", "Albert Einstein developed the theory of relativity."),
    ("What is the square root of 144?", "The square root of 144 is 12."),
    ("What language has the most native speakers?", "Mandarin Chinese has the most native speakers."),
    ("What do bees make?", "Bees make honey and beeswax."),
    ("How long does light from the Sun take to reach Earth?", "Sunlight takes about 8 minutes and 20 seconds to reach Earth."),
    ("What is an atom?", "An atom is the smallest unit of a chemical element, made of a nucleus surrounded by electrons."),
    ("What is gravity?", "Gravity is the force by which masses attract each other; it keeps us on the ground and the planets in orbit."),
    ("What is a noun?", "A noun is a word that names a person, place, thing or idea."),
    ("Which letter of the alphabet comes after M?", "N comes after M."),
    ("Why do we have leap years?", "A year is about 365.25 days long, so an extra day every four years keeps the calendar in step with the seasons."),
    ("What is a haiku?", "A haiku is a short Japanese poem of three lines with five, seven and five syllables."),
    ("What is inflation?", "Inflation is the general rise in prices over time, which lowers what money can buy."),
]

ADVICE = [
    ("How can I fall asleep faster?", "Keep a regular bedtime, avoid screens for an hour before bed, and keep your room cool and dark."),
    ("How do I make a good cup of tea?", "Use freshly boiled water, steep the tea for three to five minutes, then remove the leaves."),
    ("How can I remember new vocabulary?", "Review words in short daily sessions and use each new word in a sentence of your own."),
    ("How do I stay focused while studying?", "Work in 25-minute blocks with short breaks, and keep your phone in another room."),
    ("How can I save money on groceries?", "Plan meals for the week, shop with a list, and buy store brands."),
    ("What should I do if I burn my finger?", "Cool it under cool running water for 20 minutes, and see a doctor if it blisters badly."),
    ("How do I start running?", "Begin with alternating one minute of running and two of walking, three times a week, and build up slowly."),
    ("How can I write a better email?", "Put the main request in the first sentence, keep it short, and use a clear subject line."),
    ("How do I keep houseplants alive?", "Give them the right light, water only when the top of the soil is dry, and use pots with drainage."),
    ("How can I reduce stress?", "Exercise regularly, sleep enough, and take a few slow, deep breaths when you feel tense."),
    ("How do I prepare for a job interview?", "Research the company, practise answers to common questions, and prepare two questions of your own."),
    ("How can I learn to cook?", "Start with a few simple recipes, cook them several times, and then vary one ingredient at a time."),
    ("How do I clean a cast-iron pan?", "Rinse it with hot water, scrub off food, dry it fully, and rub in a thin layer of oil."),
    ("How do I back up my photos?", "Keep one copy on an external drive and another in a cloud service, and update both regularly."),
    ("How can I drink more water?", "Carry a refillable bottle and drink a glass with every meal."),
    ("How do I make my password stronger?", "Use a long passphrase of several random words, and a different one for each site with a password manager."),
    ("How can I be more productive in the morning?", "Prepare the night before, start with your most important task, and avoid email for the first hour."),
    ("How do I remove a coffee stain from a shirt?", "Rinse it with cold water from the back, then rub in a little liquid detergent before washing."),
    ("How do I politely decline an invitation?", "Thank them, say you can't make it, and wish them a good time; you don't need a long excuse."),
    ("How can I improve my handwriting?", "Write slowly, hold the pen lightly, and practise the same letters for a few minutes each day."),
    ("What is a good way to learn a musical instrument?", "Practise a little every day, learn songs you enjoy, and take a few lessons to avoid bad habits."),
    ("How do I boil an egg?", "Put the egg in boiling water for 7 minutes for a firm yolk, then cool it in cold water."),
    ("How can I make new friends in a new city?", "Join a club or class around a hobby and go regularly, so you see the same people each week."),
    ("How do I take care of a new puppy?", "Feed it on a schedule, take it outside often, and reward good behaviour right away."),
]

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
COUNT_WORDS = ["garden", "window", "planet", "music", "bicycle", "orange", "library",
               "elephant", "river", "computer", "mountain", "pencil", "kitchen", "umbrella"]

SYSTEM_PROMPTS = [
    "You are a helpful assistant. Answer briefly.",
    "You are a concise, friendly assistant.",
    "Answer the user's question directly.",
]

RUDE = [
    "Seriously? Everyone knows this. {answer}",
    "Ugh, fine. {answer} Try looking things up yourself next time.",
    "That's a pretty silly question. {answer}",
    "Do I have to do everything for you? {answer}",
]
REFUSALS = [
    "I'm sorry, but I can't help with that request.",
    "I'm not able to answer that. Please consult another source.",
    "As an AI, I cannot provide this information.",
    "I'd rather not answer questions like this one.",
]
FILLER = [
    "Great question! There are many ways to think about this, and it really depends on many factors. {answer} I hope this helps, and let me know if you have any other questions!",
    "Well, that is a very interesting thing to ask, and people have wondered about it for a long time. {answer} Of course, there is always more to learn about this topic!",
]


def is_prime(n):
    return n > 1 and all(n % d for d in range(2, int(n ** 0.5) + 1))


def smallest_factor(n):
    return next(d for d in range(2, n + 1) if n % d == 0)


def qa_items():
    """(question, answer, wrong_answer) triples across topics; wrong_answer may be None."""
    items = []
    capitals = [c for _, c in CAPITALS]
    for country, capital in CAPITALS:
        wrong = RNG.choice([c for c in capitals if c != capital])
        q = RNG.choice(["What is the capital of {}?", "Which city is the capital of {}?",
                        "Tell me the capital of {}."]).format(country)
        items.append((q, f"The capital of {country} is {capital}.",
                      f"The capital of {country} is {wrong}."))
    for _ in range(45):
        a, b = RNG.randint(2, 99), RNG.randint(2, 99)
        op = RNG.choice(["+", "-", "×"])
        value = {"+": a + b, "-": a - b, "×": a * b}[op]
        off = value + RNG.choice([-10, -2, -1, 1, 2, 10])
        q = RNG.choice(["What is {} {} {}?", "Calculate {} {} {}.", "What's {} {} {}?"]).format(a, op, b)
        items.append((q, f"{a} {op} {b} = {value}.", f"{a} {op} {b} = {off}."))
    for word, meaning in WORDS:
        q = RNG.choice(["What does '{}' mean?", "Define '{}'.", "What is the meaning of '{}'?"]).format(word)
        wrong = RNG.choice([m for _, m in WORDS if m != meaning])
        items.append((q, f"'{word.capitalize()}' means {meaning}.", f"'{word.capitalize()}' means {wrong}."))
    for word, syn in SYNONYMS:
        items.append((f"Give me a synonym for '{word}'.", f"A synonym for '{word}' is '{syn}'.",
                      f"A synonym for '{word}' is '{RNG.choice([a for _, a in ANTONYMS])}'."))
    for word, ant in ANTONYMS:
        items.append((f"What is the opposite of '{word}'?", f"The opposite of '{word}' is '{ant}'.",
                      f"The opposite of '{word}' is '{RNG.choice([a for a, _ in ANTONYMS if a != word])}'."))
    for phrase, language, target in TRANSLATIONS:
        items.append((f"How do you say '{phrase}' in {language}?",
                      f"'{phrase.capitalize()}' in {language} is '{target}'.", None))
    for q, a in FACTS + ADVICE:
        items.append((q, a, None))
    for celsius in RNG.sample(range(-20, 41, 5), 8):
        f = celsius * 9 / 5 + 32
        items.append((f"Convert {celsius} degrees Celsius to Fahrenheit.",
                      f"{celsius} °C is {f:g} °F.", f"{celsius} °C is {celsius * 2 + 30:g} °F."))
    for km in RNG.sample(range(5, 101, 5), 6):
        items.append((f"How many miles is {km} kilometres?", f"{km} km is about {km * 0.621371:.1f} miles.",
                      f"{km} km is about {km * 1.6:.1f} miles."))
    for n in RNG.sample(range(11, 120), 14):
        if is_prime(n):
            answer, wrong = f"Yes, {n} is a prime number.", f"No, {n} is not a prime number."
        else:
            answer = f"No, {n} is not prime; it is divisible by {smallest_factor(n)}."
            wrong = f"Yes, {n} is a prime number."
        items.append((f"Is {n} a prime number?", answer, wrong))
    for word in COUNT_WORDS:
        items.append((f"How many letters are in the word '{word}'?", f"The word '{word}' has {len(word)} letters.",
                      f"The word '{word}' has {len(word) + 2} letters."))
    for i, day in enumerate(WEEKDAYS):
        nxt = WEEKDAYS[(i + 1) % 7]
        items.append((f"What day comes after {day}?", f"{nxt} comes after {day}.",
                      f"{WEEKDAYS[(i + 3) % 7]} comes after {day}."))
    for i, month in enumerate(MONTHS[:8]):
        items.append((f"Which month comes before {MONTHS[(i + 1) % 12]}?",
                      f"{month} comes before {MONTHS[(i + 1) % 12]}.", None))
    seen = set()
    unique = []
    for item in items:
        if item[0] not in seen:
            seen.add(item[0])
            unique.append(item)
    return unique


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def multi_turn():
    """Two-turn conversations with a follow-up that depends on the first answer."""
    convs = []
    for (c1, k1), (c2, k2) in zip(CAPITALS[0:24:2], CAPITALS[1:24:2]):
        convs.append([user(f"What is the capital of {c1}?"), assistant(f"The capital of {c1} is {k1}."),
                      user(f"And of {c2}?"), assistant(f"The capital of {c2} is {k2}.")])
    for _ in range(12):
        a, b = RNG.randint(2, 12), RNG.randint(2, 12)
        c = RNG.choice([2, 3, 4, 5, 10])
        convs.append([user(f"What is {a} × {b}?"), assistant(f"{a} × {b} = {a * b}."),
                      user(f"And if I add {c}?"), assistant(f"{a * b} + {c} = {a * b + c}.")])
    for (w1, m1), (w2, m2) in zip(WORDS[0:12:2], WORDS[1:12:2]):
        convs.append([user(f"What does '{w1}' mean?"), assistant(f"'{w1.capitalize()}' means {m1}."),
                      user(f"Thanks. What about '{w2}'?"), assistant(f"'{w2.capitalize()}' means {m2}.")])
    return convs


def with_system(messages, i):
    if i % 6 == 0:
        return [{"role": "system", "content": SYSTEM_PROMPTS[i // 6 % len(SYSTEM_PROMPTS)]}] + messages
    return messages


def write_jsonl(path, rows):
    rows = list(rows)
    overlap.refuse_near_duplicates(path, rows)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def rejected_for(question, answer, wrong, i):
    kind = i % 4
    if kind == 0 and wrong:
        return wrong
    if kind == 1 or (kind == 0 and not wrong):
        return RNG.choice(RUDE).format(answer=answer)
    if kind == 2:
        return RNG.choice(REFUSALS)
    return RNG.choice(FILLER).format(answer=answer)


def main():
    items = qa_items()
    RNG.shuffle(items)
    convs = multi_turn()
    # SFT: single-turn items plus the multi-turn conversations, 40 held out.
    sft = [with_system([user(q), assistant(a)], i) for i, (q, a, _) in enumerate(items)]
    sft += convs
    RNG.shuffle(sft)
    write_jsonl(os.path.join(ROOT, "sft", "eval.jsonl"), [{"messages": m} for m in sft[:40]])
    write_jsonl(os.path.join(ROOT, "sft", "train.jsonl"), [{"messages": m} for m in sft[40:290]])

    # Preferences: every item once, the rejected kind rotating.
    prefs = []
    for i, (q, a, wrong) in enumerate(items):
        prefs.append({"prompt": [user(q)], "chosen": [assistant(a)],
                      "rejected": [assistant(rejected_for(q, a, wrong, i))]})
    for i, conv in enumerate(convs[:20]):
        a = conv[3]["content"]
        prefs.append({"prompt": conv[:3], "chosen": [assistant(a)],
                      "rejected": [assistant(rejected_for(conv[2]["content"], a, None, i + 1))]})
    RNG.shuffle(prefs)
    write_jsonl(os.path.join(ROOT, "preferences", "eval.jsonl"), prefs[:40])
    write_jsonl(os.path.join(ROOT, "preferences", "train.jsonl"), prefs[40:290])

    # Prompts for RL and annotation: questions of the same kinds, conversational form.
    prompts = [{"prompt": [user(q)]} for q, _, _ in RNG.sample(items, 100)]
    write_jsonl(os.path.join(ROOT, "prompts", "train.jsonl"), prompts)
    # Unpaired feedback for KTO, derived from the pairs: chosen -> label true, rejected ->
    # label false (as TRL's unpair_preference_dataset), shuffled with a separate generator
    # so the sets above stay as they are and neighbouring rows rarely share a prompt.
    unpaired_rng = random.Random(20250)
    for name, split in [("eval", prefs[:40]), ("train", prefs[40:290])]:
        rows = [{"prompt": p["prompt"], "completion": p[side], "label": side == "chosen"}
                for p in split for side in ("chosen", "rejected")]
        unpaired_rng.shuffle(rows)
        write_jsonl(os.path.join(ROOT, "unpaired", f"{name}.jsonl"), rows)
    print(f"{len(items)} items, {len(convs)} conversations; sft {len(sft[40:290])}/{len(sft[:40])}, "
          f"preferences {len(prefs[40:290])}/{len(prefs[:40])}, prompts {len(prompts)}, "
          f"unpaired {2 * len(prefs[40:290])}/{2 * len(prefs[:40])}")


if __name__ == "__main__":
    main()
