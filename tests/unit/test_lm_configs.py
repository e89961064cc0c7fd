"""The lm data/model config files compose with the real config tree and instantiate."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from glassworks.data.lm_datamodule import LMDataModule
from glassworks.models.decoder import DecoderConfig
from tests.conftest import compose_config


@pytest.mark.parametrize("data", ["lm_recall", "lm_copy", "lm_agreement"])
def test_lm_data_and_decoder_configs_instantiate(tmp_path, data):
    cfg = compose_config(tmp_path, [f"data={data}", "model=decoder_tiny", "data.source.n_train=20"], tiny=False)
    dm = instantiate(cfg.data)
    assert isinstance(dm, LMDataModule)
    dm.prepare()
    model_config = instantiate(cfg.model)
    assert isinstance(model_config, DecoderConfig)
    model = model_config.build(dm.vocab_size, dm.vocab.pad_id)
    assert model.max_positions >= dm.max_length


def test_text_files_and_decoder_small_configs(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(f"w{i % 11}" for i in range(400)), encoding="utf-8")
    cfg = compose_config(tmp_path, ["data=text_files", f"data.source.train={corpus}", "model=decoder_small"],
                         tiny=False)
    dm = instantiate(cfg.data)
    dm.prepare()
    assert instantiate(cfg.model).build(dm.vocab_size, 0).max_positions >= dm.max_length
