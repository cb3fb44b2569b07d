"""The R2I stages (paper Alg. 2), one async function each: a typed record in, a list of records and the drop
reasons out. They are pure given the teachers' replies (which the call cache replays), so a stage can be rerun
for any input and gives the same records: what resuming and the Ray backend rely on.

pool -> propose -> zoom -> questions -> answers -> [validate] -> ground -> [multiple choice] -> [difficulty]
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from zwz.distill.config import DistillConfig
from zwz.distill.consensus import consensus
from zwz.distill.grounding import ground_image, ground_question, guess_dimension, multiple_choice_question, shuffle_options
from zwz.distill.imaging import encode_png, image_hash, save_png_atomic, zoom_in
from zwz.distill.prompts import (
    MalformedReply, answer_prompt, distractor_prompt, parse_distractors, parse_questions, parse_yes_no,
    question_prompt, validation_prompt,
)  # fmt: skip
from zwz.distill.proposals import BoxProposer, NativeBox, filter_boxes
from zwz.distill.records import QA, Item, PoolImage, Region
from zwz.distill.teachers import TeacherError, TeacherPool
from zwz.distill.training_data import record_id
from zwz.scoring.judge import JudgeError

logger = logging.getLogger(__name__)

__all__ = ["StageContext", "STAGES"]

Result = tuple[list, Counter]


@dataclass
class StageContext:
    """What the stages share: settings, teacher clients, the work folder, native boxes, the SAM3 proposer."""

    config: DistillConfig
    teachers: TeacherPool
    work: Path
    annotations: dict[str, list[NativeBox]] = field(default_factory=dict)
    proposer: BoxProposer | None = None
    judge: object | None = None  # zwz.scoring.judge.Judge for answer equivalence and the difficulty scorer

    def __post_init__(self) -> None:
        self._open = lru_cache(maxsize=8)(self._load)

    @staticmethod
    def _load(path: str) -> Image.Image:
        with Image.open(path) as im:
            return im.convert("RGB")

    def image(self, path: str) -> Image.Image:
        """A decoded pool image (the few most recent are kept: each region of an image reuses it)."""
        return self._open(path)

    async def to_thread(self, fn, *args):
        return await asyncio.to_thread(fn, *args)


def _short(text: str) -> str:
    return " ".join(str(text).split())[:120]


# ---------------------------------------------------------------------------------------------------- pool
async def pool_stage(ctx: StageContext, path: str) -> Result:
    """A file -> a PoolImage, or a drop (``unreadable``, ``too_small``): never fatal."""
    def probe() -> tuple[str, int, int]:
        data = Path(path).read_bytes()
        with Image.open(Path(path)) as im:
            im.load()
            return image_hash(data), im.width, im.height
    try:
        image_id, width, height = await ctx.to_thread(probe)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        logger.warning("pool: skipping unreadable %s (%s)", path, exc)
        return [], Counter(unreadable=1)
    if min(width, height) < ctx.config.min_side:
        return [], Counter(too_small=1)
    return [PoolImage(image_id, str(Path(path).resolve()), width, height, Path(path).name)], Counter()


# ------------------------------------------------------------------------------------------------- propose
async def _sam3_boxes(ctx: StageContext, image: PoolImage) -> tuple[list[NativeBox], Counter]:
    from zwz.distill.sam3.inventory import INVENTORY_PROMPT, MalformedInventory, parse_inventory

    cfg = ctx.config
    png = await ctx.to_thread(lambda: encode_png(ctx.image(image.path)))
    try:
        reply = await ctx.teachers.chat(cfg.question_teacher, [png], INVENTORY_PROMPT, seed=cfg.seed,
                                        max_tokens=cfg.max_tokens)  # fmt: skip
        names = parse_inventory(reply.text)
    except TeacherError as exc:
        logger.warning("inventory for %s failed: %s", image.name, exc)
        return [], Counter(teacher_error=1)
    except MalformedInventory:
        return [], Counter(malformed_inventory=1)
    assert ctx.proposer is not None
    boxes, drops = await ctx.to_thread(ctx.proposer, ctx.image(image.path), names)
    return list(boxes), Counter(drops)


async def propose_stage(ctx: StageContext, image: PoolImage) -> Result:
    """P(I): native boxes (or inventory + SAM3), then the tau / one-instance / size filter."""
    drops: Counter = Counter()
    if ctx.proposer is not None and image.name not in ctx.annotations:
        boxes, drops = await _sam3_boxes(ctx, image)
        origin = "sam3"
    else:
        boxes, origin = ctx.annotations.get(image.name, []), "native"
    if not boxes:
        drops["no_boxes"] += 1
        return [], drops
    kept, filtered = filter_boxes(boxes, (image.width, image.height), ctx.config.tau, ctx.config.max_boxes)
    drops.update(filtered)
    regions = [
        Region(record_id(image.image_id.encode(), b.box, -1), image, list(b.box), b.label, origin, fraction,
               meta=dict(b.meta))
        for b, fraction in kept
    ]  # fmt: skip
    return regions, drops


# ---------------------------------------------------------------------------------------------------- zoom
async def zoom_stage(ctx: StageContext, region: Region) -> Result:
    """R = CROP(I, B) upscaled (2x LANCZOS), saved once under work/crops (the direct variant keeps I)."""
    if ctx.config.variant == "direct":
        return [replace(region, crop_path=region.image.path)], Counter()
    path = ctx.work / "crops" / f"{region.region_id}.png"
    if not path.exists():
        await ctx.to_thread(lambda: save_png_atomic(zoom_in(ctx.image(region.image.path), region.box, ctx.config.zoom), path))
    return [replace(region, crop_path=str(path))], Counter()


# ----------------------------------------------------------------------------------------------- questions
async def question_stage(ctx: StageContext, region: Region) -> Result:
    """Q_R = T_gen(R; K): the generator sees the crop only; its JSON is validated strictly."""
    cfg = ctx.config
    crop = Path(region.crop_path).read_bytes()
    try:
        reply = await ctx.teachers.chat(cfg.question_teacher, [crop], question_prompt(cfg.questions_per_crop),
                                        seed=cfg.seed, temperature=0.0, max_tokens=cfg.max_tokens)  # fmt: skip
        questions = parse_questions(reply.text, cfg.questions_per_crop)
    except TeacherError as exc:
        logger.warning("questions for region %s failed: %s", region.region_id, exc)
        return [], Counter(teacher_error=1)
    except MalformedReply as exc:
        logger.info("malformed question JSON for region %s (%s): %s", region.region_id, exc, _short(reply.text))
        return [], Counter(malformed_json=1)
    if not questions:
        return [], Counter(no_questions=1)
    image_bytes = region.image.image_id.encode()
    return [QA(record_id(image_bytes, region.box, i), region, i, q) for i, q in enumerate(questions)], Counter()


# ------------------------------------------------------------------------------------------------- answers
async def answer_stage(ctx: StageContext, qa: QA) -> Result:
    """m teachers x k samples at temperature 0.7 on the crop; keep the majority if it reaches the threshold."""
    cfg = ctx.config
    crop = Path(qa.region.crop_path).read_bytes()
    prompt = answer_prompt(qa.question)

    async def ask(teacher, sample: int) -> str | None:
        try:
            reply = await ctx.teachers.chat(teacher, [crop], prompt, sample=sample, seed=cfg.seed,
                                            temperature=cfg.answer_temperature, max_tokens=cfg.max_tokens)  # fmt: skip
            return reply.text
        except TeacherError as exc:
            logger.info("answer call failed: %s", exc)
            return None

    answers = await asyncio.gather(*(ask(t, s) for t in cfg.teachers for s in range(cfg.samples_per_teacher)))
    judge = ctx.judge
    try:
        result = await ctx.to_thread(lambda: consensus(answers, cfg.answers_per_question, cfg.consensus,
                                                       question=qa.question, judge=judge))  # fmt: skip
    except JudgeError as exc:  # the equivalence judge failed: this question is unresolved, not the run
        logger.warning("equivalence judge failed on %s: %s", qa.qa_id, exc)
        return [], Counter(judge_error=1)
    votes = [a if a is None else _short(a) for a in answers]
    if result.answer is None:
        failed = sum(a is None for a in answers)
        reason = "teacher_error" if failed and (len(answers) - failed) / len(answers) < cfg.consensus else "no_consensus"
        return [], Counter({reason: 1})
    return [replace(qa, answer=result.answer, agreement=result.agreement, votes=votes)], Counter()


# ---------------------------------------------------------------------------------------------- validation
async def validate_stage(ctx: StageContext, qa: QA) -> Result:
    """Optional (official code): a teacher sees I and R and says whether Q is unambiguous on I."""
    cfg = ctx.config
    full = await ctx.to_thread(lambda: encode_png(ctx.image(qa.region.image.path)))
    crop = Path(qa.region.crop_path).read_bytes()
    try:
        reply = await ctx.teachers.chat(cfg.teachers[0], [full, crop], validation_prompt(qa.question), seed=cfg.seed,
                                        max_tokens=16)  # fmt: skip
        ok = parse_yes_no(reply.text)
    except TeacherError:
        return [], Counter(teacher_error=1)
    except MalformedReply:
        return [], Counter(malformed_verdict=1)
    return ([qa], Counter()) if ok else ([], Counter(ambiguous=1))


# -------------------------------------------------------------------------------------------------- ground
async def ground_stage(ctx: StageContext, qa: QA) -> Result:
    """(I', Q') = G(I, Q, B); in benchmark mode nothing is drawn (the crop and the box are kept instead)."""
    cfg = ctx.config
    region = qa.region
    variant = "no_box" if cfg.benchmark else cfg.variant
    dimension = dict(region.meta).get("dimension") or guess_dimension(qa.question)
    item_id = qa.qa_id
    if variant == "bbox_in_image":
        path = ctx.work / "grounded" / f"{item_id}.png"

        def draw() -> list[float]:
            image, box = ground_image(ctx.image(region.image.path), region.box, expand=cfg.box_expand,
                                      width=cfg.box_width)  # fmt: skip
            if not path.exists():
                save_png_atomic(image, path)
            return [round(v, 3) for v in box]

        box = await ctx.to_thread(draw)
        image_path = str(path)
    else:
        box, image_path = list(region.box), region.image.path
    question = ground_question(qa.question, variant, box)
    assert qa.answer is not None
    return [Item(item_id, qa, image_path, question, qa.answer, box, variant, dimension)], Counter()


# ---------------------------------------------------------------------------------------- multiple choice
async def choice_stage(ctx: StageContext, item: Item) -> Result:
    """Optional: 3 teacher-written distractors, options shuffled A-D (seeded by the item id), the letter."""
    cfg = ctx.config
    crop = Path(item.qa.region.crop_path).read_bytes()
    try:
        reply = await ctx.teachers.chat(cfg.teachers[0], [crop], distractor_prompt(item.qa.question, item.answer),
                                        seed=cfg.seed, max_tokens=cfg.max_tokens)  # fmt: skip
        distractors = parse_distractors(reply.text, item.answer)
    except TeacherError:
        return [], Counter(teacher_error=1)
    except MalformedReply:
        return [], Counter(malformed_distractors=1)
    options, letter = shuffle_options(item.answer, distractors, f"{cfg.seed}:{item.item_id}")
    question = multiple_choice_question(item.question, options)
    return [replace(item, question=question, answer=letter, options=options)], Counter()


# --------------------------------------------------------------------------------------------- difficulty
async def difficulty_stage(ctx: StageContext, item: Item) -> Result:
    """The student answers (I', Q') 4x at temperature 1.0; drop the item when it is right twice or more."""
    from zwz.scoring import make_benchmark_scorer

    cfg = ctx.config
    assert cfg.student is not None
    image = Path(item.image_path).read_bytes()

    async def ask(sample: int) -> str | None:
        try:
            reply = await ctx.teachers.chat(cfg.student, [image], item.question, sample=sample, seed=cfg.seed,
                                            temperature=cfg.student_temperature, max_tokens=cfg.max_tokens)  # fmt: skip
            return reply.text
        except TeacherError as exc:
            logger.info("student call failed: %s", exc)
            return None

    replies = await asyncio.gather(*(ask(s) for s in range(cfg.student_samples)))
    if any(r is None for r in replies):
        return [], Counter(student_error=1)  # an unmeasured item is not known to be hard
    scorer = make_benchmark_scorer(ctx.judge)  # type: ignore[arg-type]
    try:
        results = await ctx.to_thread(lambda: scorer.score_many(
            replies, [item.answer] * len(replies), questions=[item.question] * len(replies),
            options=[item.options] * len(replies)))  # fmt: skip
    except JudgeError as exc:
        logger.warning("judge failed scoring the student on %s: %s", item.item_id, exc)
        return [], Counter(judge_error=1)
    correct = sum(1 for r in results if r.score == 1.0)
    if correct > cfg.max_student_correct:
        return [], Counter(too_easy=1)
    return [replace(item, student_correct=correct)], Counter()


# name -> (function, input record type); the pipeline runs the ones a config enables, in this order.
STAGES = {
    "pool": (pool_stage, str),
    "propose": (propose_stage, PoolImage),
    "zoom": (zoom_stage, Region),
    "questions": (question_stage, Region),
    "answers": (answer_stage, QA),
    "validate": (validate_stage, QA),
    "ground": (ground_stage, QA),
    "multiple_choice": (choice_stage, Item),
    "difficulty": (difficulty_stage, Item),
}
