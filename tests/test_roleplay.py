"""The role-play (Synthetic-Persona-Chat) domain: loading, the weak act labeller, prompts, reading the critic."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from ppdpp.planner.core.domain import SPLITS, Case, DomainError, Turn
from ppdpp.planner.registry.manager import get_domain, restrict_plugins
from ppdpp.plugins import roleplay
from ppdpp.plugins.roleplay import RoleplayDomain, RoleplayVerdict, parse_conversation, parse_verdict
from ppdpp.plugins.roleplay.labeller import ACTS, content_words, label_turn

from helpers import assert_alternates

HAND_LABELS = Path(__file__).with_name("roleplay_hand_labels.jsonl")
FACTS = [
    "I am a nurse.", "I keep bees on my balcony.", "I learned to sail last year.", "My twin sister lives in Lisbon.",
]


@pytest.fixture(scope="module")
def domain() -> RoleplayDomain:
    return RoleplayDomain()


@pytest.fixture
def case() -> Case:
    dialogue = (Turn("agent", "Hi! How are you?"), Turn("user", "Good, just back from sailing."))
    return Case("unit", {"agent_persona": ["I fix old clocks.", "I have two sons."], "user_persona": FACTS}, dialogue)


def write_csv(root: Path, rows: list[dict[str, str]], columns: list[str] | None = None) -> None:
    (root / "roleplay").mkdir(parents=True, exist_ok=True)
    with open(root / "roleplay" / roleplay.CSV_NAME, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns or list(roleplay.CSV_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)


def csv_row(conversation: str = "User 1: Hi!\nUser 2: Hello!\nUser 1: What do you do?\nUser 2: I sail.") -> dict:
    return {"user 1 personas": "I fix clocks.\nI have sons.", "user 2 personas": "I sail.\nI keep bees.",
            "Best Generated Conversation": conversation}


# ---- registration ------------------------------------------------------------------------------------------
def test_registered_through_its_entry_point() -> None:
    restrict_plugins(["roleplay"])
    try:
        assert isinstance(get_domain("roleplay"), RoleplayDomain)
    finally:
        restrict_plugins(None)


# ---- reading conversations ---------------------------------------------------------------------------------
def test_conversation_lines_are_read_leniently() -> None:
    text = (
        "*User 1:* Hi there!\n\n* User 2: Hello! *\n[A few minutes later]\n* * *\n"
        "user 1: Here is my recipe:\nIngredients:\n1 cup of flour\nUser 1: Enjoy!\n(They eat.)\nUser 2:   Thanks!  "
    )
    assert parse_conversation(text) == [
        Turn("agent", "Hi there!"),
        Turn("user", "Hello!"),
        Turn("agent", "Here is my recipe: Ingredients: 1 cup of flour Enjoy!"),
        Turn("user", "Thanks!"),
    ]


def test_text_before_the_first_speaker_is_dropped() -> None:
    assert parse_conversation("Scene: a park.\nUser 2: Hi\nUser 1: Hey") == [Turn("user", "Hi"), Turn("agent", "Hey")]


# ---- loading the real file ---------------------------------------------------------------------------------
def test_real_splits_by_position(domain: RoleplayDomain, data_dir: Path) -> None:
    sizes = {split: len(domain.load_cases(split, data_dir)) for split in SPLITS}
    assert sizes == {"train": 800, "valid": 100, "test": 100}
    for split in SPLITS:
        cases = domain.load_cases(split, data_dir)
        assert [c.id for c in cases] == [f"roleplay-{split}-{i}" for i in range(len(cases))]
    assert domain.load_cases("test", data_dir) is domain.load_cases("test", data_dir), "splits are cached"


def test_real_case_spot_check(domain: RoleplayDomain, data_dir: Path) -> None:
    with open(data_dir / "roleplay" / roleplay.CSV_NAME, encoding="utf-8", newline="") as fh:
        row = list(csv.DictReader(fh))[900]
    case = domain.load_cases("test", data_dir)[0]
    assert case.fields["agent_persona"] == row["user 1 personas"].splitlines()
    assert case.fields["user_persona"] == row["user 2 personas"].splitlines()
    assert case.fields["user_persona"][0] == "I am a recording engineer and own my own studio."
    assert case.dialogue[:2] == (
        Turn("agent", "I'm sorry to hear about your ex.", "empathise"),
        Turn("user", "Thanks, it was a long time ago, but it still stings sometimes."),
    )
    assert domain.opening(case) == [Turn(t.speaker, t.text) for t in case.dialogue[:2]], "opening carries no labels"
    assert domain.background(case).startswith("User 1's persona: I have been working since i was sixteen")
    assert "recording engineer" not in domain.background(case), "the partner's persona is hidden from the planner"


def test_real_sft_examples(domain: RoleplayDomain, data_dir: Path) -> None:
    examples = domain.sft_examples("valid", data_dir)
    agent_turns = sum(t.speaker == "agent" for c in domain.load_cases("valid", data_dir) for t in c.dialogue[1:])
    assert len(examples) == agent_turns > 1000
    assert all(ex.history and ex.label in ACTS for ex in examples)
    labels = Counter(ex.label for ex in examples)
    assert set(labels) >= {"ask_about_partner", "follow_up", "share_own_fact", "empathise", "find_common_ground"}


def test_every_real_conversation_reads_into_alternating_turns(domain: RoleplayDomain, data_dir: Path) -> None:
    for split in SPLITS:
        for case in domain.load_cases(split, data_dir):
            speakers = [t.speaker for t in case.dialogue]
            assert all(a != b for a, b in zip(speakers, speakers[1:])), f"{case.id}: consecutive turns not joined"
            assert all(t.text.strip() for t in case.dialogue), f"{case.id}: empty turn"
            assert domain.opening(case)[-1].speaker == "user", f"{case.id}: the planner must answer User 2"


def test_bundled_cases_cover_every_split(domain: RoleplayDomain) -> None:
    for split in SPLITS:
        cases = domain.load_cases(split, None)
        assert cases and all(c.id.startswith(f"roleplay-bundled-{split}-") for c in cases), split
        assert domain.sft_examples(split, None), f"no bundled {split} examples"


# ---- bad input ---------------------------------------------------------------------------------------------
def test_missing_csv_says_what_to_get(tmp_path: Path) -> None:
    with pytest.raises(DomainError, match=r"missing data file .*synthetic-persona-chat-valid\.csv"):
        RoleplayDomain().load_cases("train", tmp_path)


def test_missing_column_is_named(tmp_path: Path) -> None:
    write_csv(tmp_path, [{"user 1 personas": "a", "user 2 personas": "b"}], ["user 1 personas", "user 2 personas"])
    with pytest.raises(DomainError, match=r":1: the CSV header has no column.*'Best Generated Conversation'"):
        RoleplayDomain().load_cases("train", tmp_path)


def test_unreadable_row_is_an_error_or_skipped_when_asked_naming_file_and_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, [csv_row(), csv_row("User 1: Hello?\nUser 1: Anyone?")])
    with pytest.raises(DomainError, match=r"synthetic-persona-chat-valid\.csv:\d+: the conversation needs turns of "
                                          r"both.*fix or remove that row"):
        RoleplayDomain().load_cases("train", tmp_path)
    domain = RoleplayDomain(skip_bad_rows=True)
    assert len(domain.load_cases("train", tmp_path)) == 1, "the other row is still read"
    (skipped,) = domain.skipped.values()
    assert len(skipped) == 1
    assert re.search(r"synthetic-persona-chat-valid\.csv:\d+: the conversation needs turns of both", skipped[0])


def test_bad_bundled_lines_name_file_and_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = {"split": "test", "agent_persona": ["a"], "user_persona": ["b"],
            "conversation": [{"speaker": "User 1", "text": "Hi"}, {"speaker": "User 2", "text": "Hey"}]}
    path = tmp_path / "roleplay.jsonl"
    monkeypatch.setattr(roleplay, "bundled_path", lambda name: path)
    for bad, message in [
        ("{oops", r"roleplay\.jsonl:2: not valid JSON"),
        (json.dumps({**good, "split": "dev"}), r"roleplay\.jsonl:2: field 'split' must be one of"),
        (json.dumps({**good, "user_persona": "b"}), r"roleplay\.jsonl:2: field 'user_persona' has type str"),
        (json.dumps({**good, "conversation": [{"speaker": "Bob", "text": "x"}]}),
         r"roleplay\.jsonl:2: conversation\[0\]"),
    ]:
        path.write_text(json.dumps(good) + "\n" + bad + "\n", encoding="utf-8")
        with pytest.raises(DomainError, match=message):
            RoleplayDomain().load_cases("test", None)


# ---- the weak labeller -------------------------------------------------------------------------------------
SPLIT_ROWS = roleplay.split_rows(1000)  # the published split of the 1,000-row file


def test_labeller_agrees_with_the_hand_labels(domain: RoleplayDomain, data_dir: Path) -> None:
    hand = [json.loads(line) for line in HAND_LABELS.read_text(encoding="utf-8").splitlines()]
    per_sample: dict[str, list[int]] = {}
    disagreements = []
    for item in hand:
        split = next(name for name, rows in SPLIT_ROWS.items() if item["row"] in rows)
        turn = domain.load_cases(split, data_dir)[SPLIT_ROWS[split].index(item["row"])].dialogue[item["turn"]]
        assert turn.text == item["text"], f"hand label for row {item['row']} turn {item['turn']} no longer aligns"
        assert item["label"] in ACTS, item
        hits = per_sample.setdefault(item["sample"], [0, 0])
        hits[0] += turn.strategy == item["label"]
        hits[1] += 1
        if turn.strategy != item["label"]:
            disagreements.append(f"{item['label']} (hand) vs {turn.strategy}: {item['text']}")
    agreement = sum(h for h, _ in per_sample.values()) / len(hand)
    report = ", ".join(f"{name} {h}/{n}" for name, (h, n) in per_sample.items())
    assert len(hand) >= 40
    listing = "\n".join(disagreements)
    assert agreement >= 0.75, f"labeller agreement {agreement:.0%} ({report}); disagreements:\n{listing}"
    blind_hits, blind_n = per_sample["blind"]
    assert blind_hits / blind_n >= 0.65, f"agreement on the blind sample fell: {report}"


def dialogue(*texts: str) -> list[Turn]:
    """Alternating turns starting with User 1 (agent)."""
    return [Turn("agent" if i % 2 == 0 else "user", text) for i, text in enumerate(texts)]


@pytest.mark.parametrize(
    ("texts", "act"),
    [
        (("Hi!", "Hello!", "Hey, nice to meet you. How are you?"), "greet"),
        (("Hi!", "Hello! How are you?", "I'm doing great, thanks!"), "greet"),
        (("Hi!", "Hello!", "What do you do for a living?"), "ask_about_partner"),
        (("Hi!", "I just got back from sailing.", "Oh nice, where did you sail to?"), "follow_up"),
        (("Hi!", "I love my bees.", "Why bees?"), "follow_up"),
        (("Hi!", "I fix old clocks. What do you do?", "I'm a teacher. What about you?"), "ask_about_partner"),
        (("Hi!", "I play the drums.", "Anyway, did you see the game last night?"), "change_topic"),
        (("Hi!", "I love hiking.", "Me too! Hiking is the best."), "find_common_ground"),
        (("Hi!", "My dog died last week.", "I'm so sorry, that must be hard."), "empathise"),
        (("Hi!", "What do you do for fun?", "I knit scarves."), "share_own_fact"),
        (("Hi!", "Nice.", "Well, it was nice talking to you. Bye!"), "farewell"),
    ],
)
def test_labeller_rules(texts: tuple[str, ...], act: str) -> None:
    turns = dialogue(*texts)
    assert label_turn(turns, len(turns) - 1, ["I knit scarves for my friends."]) == act, texts[-1]


def test_persona_overlap_marks_a_shared_fact() -> None:
    turns = dialogue("Hi!", "That's nice.", "I volunteer at the soup kitchen on weekends.")
    assert label_turn(turns, 2, ["I volunteer at a soup kitchen."]) == "share_own_fact"
    assert content_words("The Games I'm playing, sailing, hiking") == ["gam", "play", "sail", "hik"]
    assert content_words("a hike, sailed") == ["hik", "sail"], "one stem for the forms of a word"


# ---- prompts -----------------------------------------------------------------------------------------------
def test_agent_prompt_shows_its_own_persona_only(domain: RoleplayDomain, case: Case) -> None:
    history = [*case.dialogue, Turn("agent", "Sailing? Where to?"), Turn("user", "Around the bay.")]
    messages = domain.agent_messages(case, history, "follow_up", reminder=False)
    assert_alternates(messages)
    text = json.dumps(messages)
    assert "I fix old clocks." in messages[0]["content"]
    assert not any(fact in text for fact in FACTS), "User 2's persona must stay hidden from User 1"
    assert domain.instruction("follow_up") in messages[1]["content"]
    assert messages[2] == {"role": "assistant", "content": "Hi! How are you?"}
    assert messages[-1] == {"role": "user", "content": "Around the bay."}
    plain = domain.agent_messages(case, history, None, reminder=False)
    assert not any(instruction in json.dumps(plain) for instruction in ACTS.values())


def test_reminders_repeat_role_and_goal(domain: RoleplayDomain, case: Case) -> None:
    agent = domain.agent_messages(case, case.dialogue, "ask_about_partner", reminder=True)
    assert agent[-1]["content"].startswith("Good, just back from sailing.\n\n[Reminder: you are User 1")
    assert domain.instruction("ask_about_partner") in agent[-1]["content"]
    history = [*case.dialogue, Turn("agent", "Do you sail a lot?")]
    user = domain.user_messages(case, history, reminder=True)
    assert_alternates(user)
    assert user[-1]["content"].startswith("Do you sail a lot?\n\n[Reminder: you are User 2")
    assert "Reminder" not in domain.user_messages(case, history, reminder=False)[-1]["content"]
    assert all(fact in user[0]["content"] for fact in FACTS), "the user simulator plays User 2's persona"
    assert user[-2] == {"role": "assistant", "content": "Good, just back from sailing."}


def test_opening_when_user_2_speaks_first(domain: RoleplayDomain, case: Case) -> None:
    starts_with_user = Case("u2", case.fields, (Turn("user", "Hello?"), Turn("agent", "Hi!"), Turn("user", "Hey")))
    assert domain.opening(starts_with_user) == [Turn("user", "Hello?")]
    assert_alternates(domain.agent_messages(starts_with_user, [Turn("user", "Hello?")], "greet"))
    with pytest.raises(DomainError, match="no User 2 turn"):
        domain.opening(Case("x", case.fields, (Turn("agent", "Hi"),)))


def test_critic_prompt_numbers_the_partner_facts(domain: RoleplayDomain, case: Case) -> None:
    messages = domain.critic_messages(case, case.dialogue)
    question = messages[1]["content"]
    assert "1. I am a nurse.\n2. I keep bees on my balcony." in question
    assert "User 1: Hi! How are you?\nUser 2: Good, just back from sailing." in question
    assert "Revealed facts:" in question and "In character:" in question
    assert domain.critic_choices(case) is None


# ---- reading the critic ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "revealed", "in_character"),
    [
        ("Revealed facts: 1, 3\nIn character: yes", {1, 3}, True),
        ("**Revealed facts:** 2, 3\n**In character:** No", {2, 3}, False),
        ("Revealed facts: none\nIn character: yes", set(), True),
        ("Revealed facts: [1, 2] In character: no, User 1 said it was an AI assistant.", {1, 2}, False),
        ("Revealed facts: 1, 3, 9\nIn character: yes", {1, 3}, True),
        ("Revealed facts: fact one and fact three", {1, 3}, None),
        ("No facts were revealed. User 1 did not break character.", set(), True),
        ("None of User 2's facts came out; User 1 remained in character.", set(), True),
        ("Facts 1 and 3 were revealed, and User 1 never broke character.", {1, 3}, True),
        ("Facts 1 and 3 were revealed, but fact 2 was not.", {1, 3}, None),
        ("User 2 revealed #2 and #4. User 1 broke character by saying it is an AI.", {2, 4}, False),
        ("The first and third facts came out. User 1 stayed in character.", {1, 3}, True),
        ("2 facts were revealed (1 and 4).", {1, 4}, None),
        ("User 2 did not reveal facts 2 and 4 but revealed 1. User 1 is not in character.", {1}, False),
        ("User 2 said they keep bees on a balcony. User 1 stayed in character.", {2}, True),
    ],
)
def test_messy_critic_answers(text: str, revealed: set[int], in_character: bool | None) -> None:
    assert parse_verdict(text, FACTS) == RoleplayVerdict(frozenset(revealed), in_character), text


@pytest.mark.parametrize(
    "text",
    ["I don't know.", "User 1 stayed in character.", "", "Revealed facts:\n\nUser 1 told User 2 a long story."],
)
def test_answers_without_facts_do_not_parse(text: str) -> None:
    assert parse_verdict(text, FACTS) is None


# ---- reward and success ------------------------------------------------------------------------------------
def test_sample_reward_arithmetic(domain: RoleplayDomain) -> None:
    assert domain.sample_reward(RoleplayVerdict(frozenset(), True), 4) == -1.0
    assert domain.sample_reward(RoleplayVerdict(frozenset({1, 2}), True), 4) == 0.0
    assert domain.sample_reward(RoleplayVerdict(frozenset({1, 2, 3, 4}), None), 4) == 1.0
    assert domain.sample_reward(RoleplayVerdict(frozenset({1, 2, 3}), False), 4) == pytest.approx(-0.5)
    assert RoleplayDomain(character_penalty=0.25).sample_reward(RoleplayVerdict(frozenset({1, 2, 3}), False), 4) == 0.25


def test_judge_uses_majority_facts_and_character(domain: RoleplayDomain, case: Case) -> None:
    samples = ["Revealed facts: 1, 2\nIn character: yes", "Revealed facts: 1, 2, 3\nIn character: yes",
               "Revealed facts: 1\nIn character: no", "gibberish"]
    judgement = domain.judge(case, samples)
    assert judgement.parse_failures == 1
    assert judgement.reward == pytest.approx((0.0 + 0.5 - 1.0) / 3)
    assert judgement.metrics == {"facts_revealed": 2.0, "in_character": pytest.approx(2 / 3)}
    assert judgement.success, "facts 1 and 2 are in the majority and most samples say in character"
    assert not RoleplayDomain(min_facts=3).judge(case, samples).success


def test_breaking_character_blocks_success(domain: RoleplayDomain, case: Case) -> None:
    broke = ["Revealed facts: 1, 2, 3, 4\nIn character: no"] * 2 + ["Revealed facts: 1, 2\nIn character: yes"]
    judgement = domain.judge(case, broke)
    assert not judgement.success and judgement.metrics["facts_revealed"] == 4.0
    assert judgement.reward == pytest.approx((0.0 + 0.0 + 0.0) / 3)


def test_nothing_parsed_is_zero_reward_and_no_success(domain: RoleplayDomain, case: Case) -> None:
    judgement = domain.judge(case, ["?", "hmm"])
    assert (judgement.reward, judgement.success, judgement.parse_failures) == (0.0, False, 2)


def test_constructor_options_are_checked() -> None:
    with pytest.raises(DomainError, match="min_facts must be at least 1"):
        RoleplayDomain(min_facts=0)
    with pytest.raises(DomainError, match="character_penalty must not be negative"):
        RoleplayDomain(character_penalty=-1)
