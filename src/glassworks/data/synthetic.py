"""The embedded synthetic sentiment task: English-like sentences whose label is decided by
planted evidence words (possibly negated) among neutral filler, with a ground-truth rationale.

Why synthetic: it needs no download, trains in seconds, and its rationales are exact, so
attribution methods can be scored for plausibility against a known answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

POSITIVE: tuple[str, ...] = (
    "great", "excellent", "wonderful", "brilliant", "superb", "delightful", "charming",
    "fantastic", "enjoyable", "amazing", "lovely", "outstanding", "memorable", "beautiful",
    "gripping", "clever", "touching", "fun",
)
NEGATIVE: tuple[str, ...] = (
    "terrible", "awful", "boring", "dull", "dreadful", "horrible", "poor", "bad",
    "disappointing", "weak", "tedious", "mediocre", "forgettable", "clumsy", "bland",
    "painful", "messy", "lifeless",
)
NEGATIONS: tuple[str, ...] = ("not", "never", "hardly")

_SUBJECTS = (
    "the movie", "this film", "the plot", "the acting", "the story", "the ending", "the script",
    "the soundtrack", "the cast", "it", "the book", "the show", "the performance", "the dialogue",
)
_VERBS = ("was", "is", "seemed", "felt", "looked", "sounded", "remained")
_NOUNS = (
    "music", "camera", "city", "ticket", "seat", "popcorn", "costume", "lighting", "trailer",
    "poster", "director", "budget", "runtime", "weather", "car", "house", "dog", "window", "room",
    "train", "hotel", "street", "jacket", "river",
)
_ADJECTIVES = (
    "long", "short", "old", "new", "quiet", "loud", "red", "blue", "early", "late", "familiar",
    "french", "cold", "warm", "dark", "bright", "large", "small", "green", "wooden", "crowded",
)
_TIMES = (
    "on sunday", "last night", "yesterday", "at home", "in the evening", "with friends",
    "after work", "on a train", "twice", "in march",
)
_PLACES = ("cinema", "festival", "library", "airport", "mall", "station")
_PEOPLE = ("friend", "sister", "brother", "cousin", "neighbor", "father", "teacher")
_ACTIONS = ("recommended", "mentioned", "rented", "picked", "found")
_NEGATIONS_FILLER = ("never", "hardly")
_JOINERS = ("and", "while", "but", "so")
_PREFIXES = ("honestly", "overall", "frankly", "basically")
_SUFFIXES = ("today", "again", "anyway", "though")

# Longest evidence clause: 2-word subject + verb + (negation, word) + "and" + (negation, word).
MAX_EVIDENCE_WORDS = 8


def _filler(r: random.Random, max_len: int, distractor_prob: float) -> list[str] | None:
    """One neutral clause of at most ``max_len`` words (None if none is that short). With
    probability ``distractor_prob`` it holds a negation that negates nothing evaluative, so a
    model must learn that only a negation right before an evidence word flips it."""
    n, a = r.choice(_NOUNS), r.choice(_ADJECTIVES)
    if r.random() < distractor_prob:
        candidates: tuple[str, ...] = (
            f"the {n} {r.choice(_NEGATIONS_FILLER)} changed",
            f"we {r.choice(_NEGATIONS_FILLER)} saw the {n}",
            f"i did not see the {n}",
        )
    else:
        candidates = (
            "it rained",
            "we sat down",
            f"i left {r.choice(('early', 'late'))}",
            f"the {n} was {a}",
            f"the {n} {r.choice(_VERBS)} {a}",
            f"we watched it {r.choice(_TIMES)}",
            f"i saw it at the {r.choice(_PLACES)}",
            f"there was a {a} {n}",
            f"my {r.choice(_PEOPLE)} {r.choice(_ACTIONS)} it {r.choice(_TIMES)}",
            f"the {n} near the {r.choice(_NOUNS)} was {a}",
        )
    fitting = [c.split() for c in candidates if len(c.split()) <= max_len]
    return r.choice(fitting) if fitting else None


@dataclass
class SyntheticExample:
    text: str
    label: int
    rationale: list[int]  # 0/1 per whitespace word


def generate_example(
    r: random.Random,
    label: int,
    *,
    min_words: int,
    max_words: int,
    negation_prob: float,
    two_evidence_prob: float,
    distractor_prob: float,
) -> SyntheticExample:
    """One sentence of class ``label`` (0 negative, 1 positive), exactly n words long with
    n ~ U[max(min_words, evidence length), max_words]."""
    k = 2 if r.random() < two_evidence_prob else 1
    words: list[str] = r.choice(_SUBJECTS).split() + [r.choice(_VERBS)]
    marks: list[int] = [0] * len(words)
    for j in range(k):
        if j:
            words.append("and")
            marks.append(0)
        negated = r.random() < negation_prob
        # A negated evidence word carries the opposite polarity, so the clause still says `label`.
        polarity = 1 - label if negated else label
        if negated:
            words.append(r.choice(NEGATIONS))
            marks.append(1)
        words.append(r.choice(POSITIVE if polarity == 1 else NEGATIVE))
        marks.append(1)
    clauses: list[tuple[list[str], list[int]]] = [(words, marks)]
    target = r.randint(max(min_words, len(words)), max_words)
    budget = target - len(words)
    prefix: list[str] = []
    suffix: list[str] = []
    while budget > 0:
        clause = _filler(r, budget - 1, distractor_prob)  # -1: the joiner
        if clause is None:
            # One or two slots left: a sentence adverb at the front and/or the end.
            if not prefix and (suffix or r.random() < 0.5):
                prefix.append(r.choice(_PREFIXES))
            else:
                suffix.append(r.choice(_SUFFIXES))
            budget -= 1
            continue
        clauses.insert(r.randint(0, len(clauses)), (clause, [0] * len(clause)))
        budget -= len(clause) + 1
    out_words: list[str] = list(prefix)
    out_marks: list[int] = [0] * len(prefix)
    for i, (w, m) in enumerate(clauses):
        if i:
            out_words.append(r.choice(_JOINERS))
            out_marks.append(0)
        out_words.extend(w)
        out_marks.extend(m)
    out_words.extend(suffix)
    out_marks.extend([0] * len(suffix))
    assert len(out_words) == target == len(out_marks), (len(out_words), target)
    return SyntheticExample(" ".join(out_words), label, out_marks)


def generate_split(
    n: int,
    *,
    seed: int,
    split: str,
    min_words: int,
    max_words: int,
    negation_prob: float,
    two_evidence_prob: float,
    distractor_prob: float,
    label_noise: float = 0.0,
    exclude: set[str] | None = None,
) -> list[SyntheticExample]:
    """``n`` balanced examples. String seeds hash with SHA-512 in :mod:`random`, so the data is
    identical across processes and Python versions; noise has its own stream so that changing
    ``label_noise`` flips labels without changing any text."""
    r = random.Random(f"glassworks-synthetic:{seed}:{split}")
    labels = [i % 2 for i in range(n)]
    r.shuffle(labels)
    exclude = set() if exclude is None else exclude
    examples: list[SyntheticExample] = []
    for y in labels:
        # Redraw texts already in an earlier split: duplicates across splits would inflate
        # validation/test scores. Few attempts suffice: the sentence space is huge.
        for _ in range(100):
            ex = generate_example(
                r, y, min_words=min_words, max_words=max_words, negation_prob=negation_prob,
                two_evidence_prob=two_evidence_prob, distractor_prob=distractor_prob,
            )
            if ex.text not in exclude:
                break
        examples.append(ex)
    if label_noise > 0:
        noise = random.Random(f"glassworks-synthetic-noise:{seed}:{split}")
        for ex in examples:
            if noise.random() < label_noise:
                ex.label = 1 - ex.label
    return examples
