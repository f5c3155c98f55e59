"""The built-in prompt-search task: label short reviews positive or negative, answering with the label only.

Why this task: what a small model does with it depends on the prompt. Asked "Review: ...
Sentiment:", SmolLM2-135M writes a sentence ("The review is positive, but ...") and leans positive;
told to answer with one word, it mostly does. The reward pays for both the right label and the bare
format, so a search over prompts has something to find, and it is checked without a judge model.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from lightning_queue.litagent import rollout
from lightning_queue.types import LLM, PromptTemplate

from ..evaluation import Check

LABELS = ("positive", "negative")

SEED_TEMPLATE = "Review: {text}\nSentiment:"

# (review, label); written for this project, balanced, short enough for a 135M model's context.
REVIEWS: tuple[tuple[str, str], ...] = (
    ("An absolute delight from start to finish, I loved it.", "positive"),
    ("The food was cold and the waiter ignored us all night.", "negative"),
    ("Charming story and great acting.", "positive"),
    ("I want my money back, this was a waste of time.", "negative"),
    ("The battery lasts for days and the screen is gorgeous.", "positive"),
    ("It broke after two uses and support never answered.", "negative"),
    ("Friendly staff, spotless rooms, we will come back.", "positive"),
    ("The plot made no sense and the jokes fell flat.", "negative"),
    ("Fast delivery and the shoes fit perfectly.", "positive"),
    ("Loud, crowded and overpriced. Never again.", "negative"),
    ("A warm, funny film that the whole family enjoyed.", "positive"),
    ("The app crashes every time I open it.", "negative"),
    ("Best coffee in town, and the pastries are fresh.", "positive"),
    ("The hotel smelled of smoke and the bed was broken.", "negative"),
    ("Clear instructions, easy setup, works great.", "positive"),
    ("Boring from the first page to the last.", "negative"),
    ("The guide was knowledgeable and the views were stunning.", "positive"),
    ("My order arrived late and half of it was missing.", "negative"),
    ("Beautiful sound and very comfortable to wear.", "positive"),
    ("The soup was salty and the bread was stale.", "negative"),
    ("An inspiring book that I could not put down.", "positive"),
    ("Terrible customer service, they hung up on me.", "negative"),
    ("The kids had a wonderful time at the park.", "positive"),
    ("The colours faded after the first wash.", "negative"),
    ("Great value for the price, highly recommended.", "positive"),
    ("The sequel is a dull copy of the original.", "negative"),
    ("Quiet, powerful and easy to clean. Love this vacuum.", "positive"),
    ("The flight was delayed five hours with no explanation.", "negative"),
    ("Tender steak, kind service, lovely evening.", "positive"),
    ("The lid leaks and coffee spills everywhere.", "negative"),
    ("A brilliant performance by the lead actress.", "positive"),
    ("The room was tiny and the wifi did not work.", "negative"),
    ("Sturdy, light and the perfect size for hiking.", "positive"),
    ("I regret buying this, it feels cheap.", "negative"),
    ("The teacher explained everything patiently.", "positive"),
    ("The ending was rushed and disappointing.", "negative"),
    ("Fresh ingredients and generous portions.", "positive"),
    ("The printer jams on every other page.", "negative"),
    ("Our new puppy loves this toy.", "positive"),
    ("Rude staff and a dirty bathroom.", "negative"),
)

_WORD = re.compile(r"[a-z]+")


def make_tasks() -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Train and validation tasks `{"text", "label"}`: alternate reviews, so both halves stay balanced."""
    tasks = [{"text": text, "label": label} for text, label in REVIEWS]
    return tasks[0::2], tasks[1::2]


def seed_template() -> PromptTemplate:
    """The deliberately weak starting prompt (it asks for nothing in particular)."""
    return PromptTemplate(template=SEED_TEMPLATE, engine="f-string")


def score(reply: str, label: str) -> float:
    """1.0 for exactly the right label, 0.5 when the first label the reply names is right, else 0.0."""
    return check({"label": label}, reply).reward


def check(task: Mapping[str, Any], reply: str) -> Check:
    """The task's checker: correct when the first label the reply names is the review's label."""
    words = _WORD.findall(reply.lower())
    named = [w for w in words if w in LABELS]
    correct = bool(named) and named[0] == task["label"]
    exact = words == [task["label"]]
    reward = 1.0 if exact else 0.5 if correct else 0.0
    return Check(correct=correct, reward=reward, parts={"correct": float(correct), "bare_label": float(exact)})


@rollout
async def sentiment_agent(task: dict[str, Any], llm: LLM, prompt_template: PromptTemplate) -> float:
    """Format the rollout's prompt template with the review, ask the LLM through its endpoint, score the reply."""
    from openai import AsyncOpenAI

    params = llm.sampling_parameters
    prompt = prompt_template.format(text=task["text"])
    async with AsyncOpenAI(base_url=llm.endpoint, api_key=llm.api_key or "unused", max_retries=0) as client:
        reply = await client.chat.completions.create(
            model=llm.model,
            messages=[{"role": "user", "content": prompt}],
            temperature=float(params.get("temperature", 0.0)),
            max_tokens=int(params.get("max_tokens", 16)),
        )
    return score(reply.choices[0].message.content or "", str(task["label"]))
