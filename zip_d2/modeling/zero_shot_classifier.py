"""Zero-shot RoI classifier: cosine similarity to frozen CLIP text embeddings (Detic pattern).

The classifier's weight is not learned: it is the (C, D) matrix of L2-normalised CLIP text
embeddings of the vocabulary, so a new vocabulary at test time is a new matrix, not retraining.
What is learned is the projection of an RoI feature into the D-dimensional text space (and,
optionally, a scalar bias and a background direction).
"""
import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ZeroShotClassifier"]


class ZeroShotClassifier(nn.Module):
    """Logits = temperature * cos(W x, e_c) for each class c, plus one background column.

    Args:
        input_dim: size of the (flattened) RoI feature.
        embeddings: (C, D) float text embeddings of the vocabulary; normalised again here so a
            caller's unnormalised matrix cannot change the scale of the logits.
        temperature: logit scale of the cosine similarities (Detic and Zip use 50).
        use_bias: learn one scalar added to every foreground logit (Detic's option); it lets the
            model shift how often any class beats the background without touching the geometry.
        background: "zero" — the background logit is the constant 0, as in Detic (a RoI is
            background when it is not similar enough to any class); "learned" — a learned unit
            vector in text space, scored like a class, so background RoIs can point somewhere.

    The embeddings are a non-persistent buffer: they are not saved in checkpoints, because they
    come from the vocabulary of the run (config or command line), not from training.
    """

    def __init__(
        self,
        input_dim: int,
        embeddings: torch.Tensor,
        *,
        temperature: float = 50.0,
        use_bias: bool = False,
        background: str = "zero",
    ):
        super().__init__()
        if embeddings.dim() != 2:
            raise ValueError(f"text embeddings must be (C, D), got shape {tuple(embeddings.shape)}")
        if background not in ("zero", "learned"):
            raise ValueError(f"background must be 'zero' or 'learned', got {background!r}")
        self.embed_dim = embeddings.shape[1]
        self.temperature = float(temperature)
        self.background = background
        # nn.Linear's default init on purpose: the gradient of L2 normalisation scales with
        # 1 / |W x|, so detectron2's tiny std=0.01 classifier init would blow it up.
        self.linear = nn.Linear(input_dim, self.embed_dim)
        self.bias = nn.Parameter(torch.zeros(1)) if use_bias else None
        if background == "learned":
            self.background_embedding = nn.Parameter(torch.randn(self.embed_dim) * 0.01)
        self.register_buffer("text_embeddings", self._normalise(embeddings), persistent=False)

    @staticmethod
    def _normalise(embeddings: torch.Tensor) -> torch.Tensor:
        return F.normalize(embeddings.detach().float(), dim=1)

    @property
    def num_classes(self) -> int:
        return self.text_embeddings.shape[0]

    def set_embeddings(self, embeddings: torch.Tensor) -> None:
        """Swap the vocabulary: (C', D) embeddings replace the current (C, D) ones."""
        if embeddings.dim() != 2 or embeddings.shape[1] != self.embed_dim:
            raise ValueError(
                f"text embeddings must be (C, {self.embed_dim}) to match this head, "
                f"got shape {tuple(embeddings.shape)}"
            )
        self.text_embeddings = self._normalise(embeddings).to(self.linear.weight.device)

    def forward(self, x: torch.Tensor, embeddings: torch.Tensor = None) -> torch.Tensor:
        """
        Args:
            x: (R, input_dim) RoI features.
            embeddings: optional (C', D) normalised embeddings used instead of the buffer.

        Returns:
            (R, C + 1) logits; the last column is background, as detectron2 expects.
        """
        weight = self.text_embeddings if embeddings is None else embeddings
        projected = F.normalize(self.linear(x), dim=1)
        logits = self.temperature * projected @ weight.t()
        if self.bias is not None:
            logits = logits + self.bias
        if self.background == "learned":
            bg_direction = F.normalize(self.background_embedding, dim=0)
            bg_logit = self.temperature * projected @ bg_direction
        else:
            bg_logit = logits.new_zeros(logits.shape[0])
        return torch.cat([logits, bg_logit[:, None]], dim=1)
