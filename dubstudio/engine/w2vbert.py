"""w2v-BERT 2.0 semantic features for the official bundle (transformers, local files only).

Dimension legend: N samples at 16 kHz, T frames (50 Hz), D hidden width (1024 for w2v-BERT 2.0).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from dubstudio.core.errors import ModelLoadError
from dubstudio.engine import checkpoints

log = logging.getLogger(__name__)

HIDDEN_LAYER = 17  # IndexTTS-2 uses the output of the 17th of 24 conformer layers.


class W2VBertFeatures:
    """SeamlessM4T fbank front-end + Wav2Vec2BertModel, one hidden layer, normalised with stats.

    Args:
        model_dir: A local `facebook/w2v-bert-2.0` snapshot (config.json, weights,
            preprocessor_config.json). Nothing is downloaded.
        stats_path: `wav2vec2bert_stats.pt` with ``mean`` and ``var`` (D,).
        device: Where the model runs.
        hidden_layer: Index into ``hidden_states`` (0 = before the encoder).
    """

    sample_rate = 16000

    def __init__(
        self,
        model_dir: str | Path,
        stats_path: str | Path,
        *,
        device: torch.device | str = "cpu",
        hidden_layer: int = HIDDEN_LAYER,
    ) -> None:
        from transformers import SeamlessM4TFeatureExtractor, Wav2Vec2BertModel

        model_dir = Path(model_dir)
        if not (model_dir / "config.json").is_file():
            raise ModelLoadError(
                f"No w2v-BERT model in {model_dir} (config.json missing). Run "
                "'dubstudio models fetch indextts2' on a machine with internet access."
            )
        try:
            self.extractor = SeamlessM4TFeatureExtractor.from_pretrained(
                str(model_dir), local_files_only=True
            )
            self.model = Wav2Vec2BertModel.from_pretrained(
                str(model_dir), local_files_only=True
            ).eval()
        except OSError as exc:
            raise ModelLoadError(f"Cannot load w2v-BERT from {model_dir}: {exc}") from exc
        n_layers = self.model.config.num_hidden_layers
        if not 0 <= hidden_layer <= n_layers:
            raise ModelLoadError(
                f"hidden layer {hidden_layer} does not exist in a {n_layers}-layer w2v-BERT"
            )
        self.device = torch.device(device)
        self.model.to(self.device)
        self.hidden_layer = hidden_layer
        stats = checkpoints.read_state_dict(stats_path)
        if "mean" not in stats or "var" not in stats:
            raise ModelLoadError(f"{stats_path} must hold 'mean' and 'var' tensors.")
        width = self.model.config.hidden_size
        if stats["mean"].numel() != width or stats["var"].numel() != width:
            raise ModelLoadError(
                f"{stats_path} has stats of width {stats['mean'].numel()}, the model has {width}."
            )
        self.mean = stats["mean"].float().reshape(1, 1, -1).to(self.device)
        self.std = torch.sqrt(stats["var"].float()).reshape(1, 1, -1).to(self.device)

    @torch.inference_mode()
    def __call__(self, wave16k: torch.Tensor) -> torch.Tensor:
        """Normalised layer features of one clip.

        Args:
            wave16k: (N,) or (1, N) waveform at 16 kHz in [-1, 1].

        Returns:
            (1, T, D) features, T ≈ N / 320.
        """
        audio = wave16k.reshape(-1).float().cpu().numpy()
        inputs = self.extractor(audio, sampling_rate=self.sample_rate, return_tensors="pt")
        out = self.model(
            input_features=inputs["input_features"].to(self.device),
            attention_mask=inputs["attention_mask"].to(self.device),
            output_hidden_states=True,
        )
        feats = out.hidden_states[self.hidden_layer]
        return (feats - self.mean) / self.std
