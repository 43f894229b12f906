import math

import torch

from losscraft.data.chat import context_ids, response_ids
from losscraft.data.collate import DialogCollator, with_rots_in_prompt
from losscraft.models import tiny_tokenizer
from losscraft.types import Example


def test_mask_covers_response_tokens_only():
    tok = tiny_tokenizer()
    ex = Example(history=["hi"], response="hello!", is_safe=True)
    batch = DialogCollator(tok)([ex])
    masked = batch.targets[batch.response_mask.bool()].tolist()
    assert masked == response_ids(tok, "hello!")
    assert tok.decode(masked).startswith("hello!")
    assert batch.is_safe.tolist() == [1.0]


def test_history_truncated_from_the_left():
    tok = tiny_tokenizer()
    history = ["a very old turn " * 5, "middle turn", "latest question?"]
    ids = context_ids(tok, history, max_tokens=60)
    assert len(ids) <= 60
    text = tok.decode(ids)
    assert "latest question?" in text and "a very old turn" not in text


def test_unknown_label_is_nan_and_padding_masked():
    tok = tiny_tokenizer()
    batch = DialogCollator(tok)([Example(["x"], "short"), Example(["y"], "a much longer reply")])
    assert math.isnan(batch.is_safe[0].item())
    assert int(batch.lengths[0]) < batch.input_ids.shape[1]
    assert batch.attention_mask[0, int(batch.lengths[0]):].sum() == 0


def test_rot_placement():
    hist, system = with_rots_in_prompt(["hi", "can I lie?"], ["It's wrong to lie."], "system", None)
    assert hist == ["hi", "can I lie?"] and "It's wrong to lie." in system
    hist, _ = with_rots_in_prompt(["can I lie?"], ["It's wrong to lie."], "before_last_turn", None)
    assert hist[-1].startswith("Rules of thumb") and hist[-1].endswith("can I lie?")


def test_packed_negatives_layout():
    tok = tiny_tokenizer()
    ex = Example(["hi"], "hello", negatives=["go away", "no"], negative_weights=[2.0])
    batch = DialogCollator(tok, pack_negatives=True)([ex, Example(["yo"], "hey")])
    assert batch.attention_mask.shape[1] == 1 and batch.attention_mask.dim() == 4
    assert batch.negative_mask.tolist() == [[True, True], [False, False]]
    assert batch.negative_weights[0].tolist() == [2.0, 1.0]
    for k, text in enumerate(["hello", "go away", "no"], start=1):
        assert batch.targets[0][batch.segment_ids[0] == k].tolist() == response_ids(tok, text)
    assert torch.equal(batch.response_mask, (batch.segment_ids == 1).float())


def test_truncation_keeps_the_system_prompt():
    tok = tiny_tokenizer()
    system = "Rules of thumb: be kind."
    ids = context_ids(tok, ["word " * 80 + "final question?"], system=system, max_tokens=90)
    text = tok.decode(ids)
    assert len(ids) <= 90
    assert system in text and "final question?" in text
