"""Generate the tool-selection dataset: a user request → the tool slug that serves it.

Deterministic (seeded), standard library only. Rewrites train.jsonl and test.jsonl beside this
file, or in --out, and two harbor-format benchmarks: benchmark/ (the test rows, scored after
training) and validation/ (other requests, scored during training):

    python data/tool_selection/make.py [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import string
from pathlib import Path

SEED = 1234
TRAIN_PER_TOOL = 16
TEST_PER_TOOL = 4
VALIDATION_PER_TOOL = 2

SLOTS = {
    "name": ["Dana", "Priya", "Marcus", "Elena", "Tom", "Aiko", "Jonas", "Fatima", "Luis", "Grace"],
    "message": [
        "the report is ready",
        "the meeting moved to Friday",
        "I'll be ten minutes late",
        "the invoice has been paid",
        "the slides are in the shared drive",
        "we signed the contract",
        "the build is green again",
        "lunch is on me today",
    ],
    "subject": [
        "the invoice",
        "the Q3 budget",
        "the team offsite",
        "the hiring plan",
        "the vendor contract",
        "the product launch",
    ],
    "channel": ["#general", "#engineering", "#design", "#sales", "#random", "#support"],
    "slug": [
        "launch-planning",
        "q3-roadmap",
        "design-reviews",
        "oncall",
        "customer-feedback",
        "hackathon",
    ],
    "team": ["marketing", "platform", "mobile", "data", "finance"],
    "repo": ["acme/web-app", "acme/api", "acme/mobile", "acme/infra", "acme/docs"],
    "bug": [
        "the login page crashes on Safari",
        "CSV export drops the last row",
        "the dark mode toggle does nothing",
        "search is slow for long queries",
        "the signup email has a typo",
        "uploads over 10 MB time out",
    ],
    "event": ["a design review", "a 1:1", "lunch", "a project kickoff", "a budget check-in"],
    "time": [
        "tomorrow at 3pm",
        "on Friday at 10am",
        "next Monday at noon",
        "on Thursday at 4:30pm",
        "on the 14th at 9am",
    ],
    "day": ["on Thursday", "tomorrow afternoon", "next week", "this Friday morning", "on Monday"],
    "city": ["Paris", "Berlin", "Tokyo", "Nairobi", "Toronto", "Lisbon", "Seoul", "Denver", "Oslo"],
}

# toolkit → tool slug → request templates; {slot} names a list in SLOTS.
TOOLS = {
    "gmail": {
        "GMAIL_SEND_EMAIL": [
            "Send an email to {name} saying {message}",
            "Email {name} that {message}",
            "Shoot {name} an email letting them know {message}",
            "Write to {name} by email: {message}",
            "Draft and send a mail to {name} telling them {message}",
            "Let {name} know over email that {message}",
        ],
        "GMAIL_FETCH_EMAILS": [
            "Find the emails from {name} about {subject}",
            "Search my inbox for messages about {subject}",
            "Did {name} email me about {subject}?",
            "Show me my unread emails from {name}",
            "Pull up last week's emails regarding {subject}",
            "Check my Gmail for anything from {name} on {subject}",
        ],
    },
    "slack": {
        "SLACK_SEND_MESSAGE": [
            "Post in {channel} that {message}",
            "Tell the {channel} channel on Slack that {message}",
            "Send a Slack message to {name} saying {message}",
            "DM {name} on Slack: {message}",
            "Drop a note in {channel}: {message}",
            "Ping {name} on Slack to say {message}",
        ],
        "SLACK_CREATE_CHANNEL": [
            "Create a Slack channel called #{slug}",
            "Set up a new channel named {slug} in our Slack workspace",
            "Open a new Slack channel {slug} for the {team} team",
            "Can you spin up a Slack channel named #{slug}?",
            "Start a channel on Slack called {slug} for {name} and the {team} folks",
            "We need a fresh Slack channel, #{slug}, for the {team} team",
        ],
    },
    "github": {
        "GITHUB_CREATE_ISSUE": [
            "Open an issue in {repo} about how {bug}",
            "File a bug on GitHub in {repo}: {bug}",
            "Create a GitHub issue for {repo} saying {bug}",
            "Report in the {repo} repo that {bug}",
            "Log a ticket on GitHub ({repo}) because {bug}",
            "Add an issue to {repo} and assign it to {name}: {bug}",
        ],
        "GITHUB_LIST_PULL_REQUESTS": [
            "List the open pull requests in {repo}",
            "Which PRs are waiting for review in {repo}?",
            "Show me {name}'s pull requests on {repo}",
            "What pull requests were merged into {repo} this week?",
            "Are there any open PRs on {repo} from {name}?",
            "Give me the PR queue for {repo}",
        ],
    },
    "calendar": {
        "CALENDAR_CREATE_EVENT": [
            "Schedule {event} with {name} {time}",
            "Put {event} on my calendar {time}",
            "Book {event} with {name}, {time}",
            "Add a calendar event: {event} {time}",
            "Set up {event} with {name} {time} and send them an invite",
            "Block my calendar {time} for {event}",
        ],
        "CALENDAR_FIND_FREE_SLOTS": [
            "When am I free {day}?",
            "Find a free slot {day} for a 30-minute call",
            "Do I have any open time {day}?",
            "Check my availability {day}",
            "Find a time {day} when both {name} and I are free",
            "Is my calendar clear {day}?",
        ],
    },
    "weather": {
        "WEATHER_GET_CURRENT": [
            "What's the weather in {city} right now?",
            "How hot is it in {city} at the moment?",
            "Is it raining in {city} currently?",
            "Current temperature in {city}, please",
            "What are the conditions like in {city} this very minute?",
            "Tell me what it's like outside in {city} now",
        ],
        "WEATHER_GET_FORECAST": [
            "Will it rain in {city} this weekend?",
            "What's the forecast for {city} tomorrow?",
            "Give me the 5-day forecast for {city}",
            "Should I pack an umbrella for {city} next week?",
            "How cold will it get in {city} on Saturday?",
            "Is it going to snow in {city} later this week?",
        ],
    },
}


def expand(template: str) -> list[str]:
    """Every sentence a template makes, one per combination of its slot values."""
    slots = [field for _, field, _, _ in string.Formatter().parse(template) if field]
    combos = itertools.product(*(SLOTS[slot] for slot in slots))
    return [template.format(**dict(zip(slots, combo, strict=True))) for combo in combos]


def build(rng: random.Random) -> tuple[list[dict], list[dict], list[dict]]:
    train, test, validation = [], [], []
    for toolkit, tools in TOOLS.items():
        for slug, templates in tools.items():
            # Take templates in turn, so a template with many slot combinations doesn't crowd
            # out the others; each sentence is used once, so no test prompt is also in train.
            pools = [rng.sample(expand(t), len(expand(t))) for t in templates]
            interleaved = (s for group in itertools.zip_longest(*pools) for s in group if s)
            unique = list(dict.fromkeys(interleaved))
            picked = unique[: TRAIN_PER_TOOL + TEST_PER_TOOL]
            spare = unique[len(picked) : len(picked) + VALIDATION_PER_TOOL]
            rng.shuffle(picked)
            rows = [{"prompt": p, "answer": slug, "toolkit": toolkit} for p in picked]
            train += rows[:TRAIN_PER_TOOL]
            test += rows[TRAIN_PER_TOOL:]
            validation += [{"prompt": p, "answer": slug, "toolkit": toolkit} for p in spare]
    rng.shuffle(train)
    rng.shuffle(test)
    return train, test, validation


def write(rows: list[dict], path: Path, split: str) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for i, row in enumerate(rows):
            handle.write(json.dumps({"id": f"tool_selection-{split}-{i:03d}", **row}) + "\n")


def write_benchmark(rows: list[dict], directory: Path, name: str, description: str) -> None:
    """A harbor-format benchmark: tasks.jsonl (harbor tasks) and metadata.yaml."""
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "tasks.jsonl").open("w", encoding="utf-8") as handle:
        for i, row in enumerate(rows):
            task = {
                "task_id": f"{name}-{i:03d}",
                "instruction": row["prompt"],
                "verifier": {
                    "kind": "in_process",
                    "fn_name": "exact_match",
                    "expected": row["answer"],
                },
                "metadata": {"toolkit": row["toolkit"]},
            }
            handle.write(json.dumps(task) + "\n")
    metadata = f"name: {name}\ndescription: {description}\nbreakdown_keys: [toolkit]\n"
    (directory / "metadata.yaml").write_text(metadata, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    train, test, validation = build(random.Random(SEED))
    write(train, out / "train.jsonl", "train")
    write(test, out / "test.jsonl", "test")
    write_benchmark(test, out / "benchmark", "tool_selection", "the test rows as harbor tasks")
    write_benchmark(
        validation, out / "validation", "tool_selection_val", "requests in neither train nor test"
    )
    print(
        f"wrote {len(train)} train, {len(test)} test and {len(validation)} validation rows to {out}"
    )


if __name__ == "__main__":
    main()
