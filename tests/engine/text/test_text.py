"""Official BPE front-end: normalisation, pinyin units, CJK spacing, segmentation."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import sentencepiece as spm

from dubstudio.core.errors import ModelLoadError
from dubstudio.engine.text import BpeFrontEnd, OfficialNormalizer, TextFrontEnd, split_pieces
from dubstudio.engine.text.normalize import (
    PINYIN_TONE_RE,
    correct_pinyin,
    space_cjk,
    uses_chinese_branch,
)

CORPUS = [
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG.",
    "HELLO WORLD, HOW ARE YOU TODAY? I AM FINE!",
    "TWELVE POINT FIVE DOLLARS FOR THREE APPLES.",
    "我 爱 你 . 你 好 世 界 , 今 天 天 气 很 好 .",
    "最 ZHONG4 要 的 是 , 不 要 CHONG2 蹈 覆 辙 .",
    "SHE SAID 'YES' - AND THEN LEFT ...",
]


@pytest.fixture(scope="module")
def bpe_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny SentencePiece BPE model trained like the official one (pinyin as pieces)."""
    out = tmp_path_factory.mktemp("bpe")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS * 20),
        model_writer=model,
        model_type="bpe",
        vocab_size=120,
        character_coverage=1.0,
        user_defined_symbols=["ZHONG4", "CHONG2", "JV4"],
        bos_id=-1,
        eos_id=-1,
        minloglevel=2,
    )
    path = out / "bpe.model"
    path.write_bytes(model.getvalue())
    return path


@pytest.fixture(scope="module")
def front(bpe_path: Path) -> BpeFrontEnd:
    return BpeFrontEnd(bpe_path)


def test_front_end_satisfies_the_protocol(front: BpeFrontEnd) -> None:
    assert isinstance(front, TextFrontEnd)
    assert front.vocab_size == 120


def test_english_is_verbalised_and_upper_cased() -> None:
    n = OfficialNormalizer()
    assert n("I paid $12.50 for 3 apples.") == "I PAID TWELVE POINT FIVE DOLLARS FOR THREE APPLES."
    assert n("where's the money?") == "WHERE IS THE MONEY?"


def test_chinese_is_spaced_and_punctuation_mapped() -> None:
    n = OfficialNormalizer()
    assert n("我爱你！你好，世界。") == "我 爱 你 ! 你 好 , 世 界 ."
    assert n("“衣裳”（好）") == "' 衣 裳 '' 好 '"
    assert n("这酒...里……有毒") == "这 酒 … 里 … 有 毒"
    assert n("2025年") == "二 零 二 五 年"


def test_toned_pinyin_survives_as_a_unit(front: BpeFrontEnd) -> None:
    assert OfficialNormalizer()("最zhong4要的是：不要chong2蹈覆辙") == (
        "最 ZHONG4 要 的 是 , 不 要 CHONG2 蹈 覆 辙"
    )
    pieces = front.pieces("最zhong4要")
    assert "ZHONG4" in pieces or "\u2581ZHONG4" in pieces
    assert correct_pinyin("ju4") == "JV4" and correct_pinyin("xuan2") == "XVAN2"
    assert PINYIN_TONE_RE.search("beta1") is None and PINYIN_TONE_RE.search("voice2") is None
    assert uses_chinese_branch("read it as zhong4")
    assert not uses_chinese_branch("read it as beta2")


def test_names_are_not_touched_by_tn() -> None:
    assert OfficialNormalizer()("克里斯托弗·诺兰2010年") == "克 里 斯 托 弗 - 诺 兰 二 零 一 零 年"


def test_tn_can_be_switched_off() -> None:
    assert OfficialNormalizer(use_tn=False)("I have 3 cats; ok") == "I HAVE 3 CATS, OK"


def test_space_cjk() -> None:
    assert space_cjk("你好世界是 hello world 的中文") == "你 好 世 界 是 HELLO WORLD 的 中 文"


def test_single_character_is_encoded_raw(front: BpeFrontEnd) -> None:
    assert front.normalize("a") == "a"
    assert front.normalize(" 3 ") == " 3 "


def test_encode_round_trips_through_decode(front: BpeFrontEnd) -> None:
    ids = front.encode("Hello world, how are you today?")
    assert ids and all(0 <= i < front.vocab_size for i in ids)
    assert front.decode(ids) == "HELLO WORLD, HOW ARE YOU TODAY?"


def test_segments_respect_the_limit_and_keep_every_token(front: BpeFrontEnd) -> None:
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 12)
    whole = front.encode(text)
    segments = front.segments(text, max_tokens=40)
    assert len(segments) > 1
    assert all(1 <= len(s) <= 40 for s in segments)
    assert [i for s in segments for i in s] == whole
    period = {front.sp.PieceToId("."), front.sp.PieceToId("\u2581.")}
    assert all(s[-1] in period for s in segments)  # cut at sentence ends


def test_split_pieces_falls_back_to_commas_hyphens_then_hard_cuts() -> None:
    run = ["A", "B", ",", "C", "D", ",", "E", "F", "G", "H"]
    assert split_pieces(run, 4) == [["A", "B", ","], ["C", "D", ","], ["E", "F", "G", "H"]]
    hyphen = ["A", "B", "-", "C", "D", "E", "F"]
    assert split_pieces(hyphen, 4) == [["A", "B", "-"], ["C", "D", "E", "F"]]
    assert split_pieces(list("ABCDEFGHIJ"), 4) == [list("ABCD"), list("EFGH"), list("IJ")]
    # short sentences merge while they fit; a quote after a full stop stays with it
    assert split_pieces(["A", "B", ".", "C", "D", "."], 10) == [["A", "B", ".", "C", "D", "."]]
    assert split_pieces(["A", "B", ".", "'", "C", "D", "E", "."], 5) == [
        ["A", "B", ".", "'"],
        ["C", "D", "E", "."],
    ]


def test_missing_model_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found"):
        BpeFrontEnd(tmp_path / "bpe.model")


def test_hyphens_of_technical_terms_are_not_read_as_minus() -> None:
    n = OfficialNormalizer()
    assert n("GPT-5-Nano 是 GPT-5 模型") == "GPT- 五 -NANO 是 GPT- 五 模 型"
    assert n("such as F5-TTS and XTTS") == "SUCH AS F FIVE-TTS AND XTTS"
