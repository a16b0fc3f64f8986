# mypy: disable-error-code="no-any-return"
"""The model families compared on DS2; every one takes ``beat`` (b, leads, L) and ``rr`` (b, F).

Kept deliberately small (a monitor serves thousands of beds): a few thousand to
a few tens of thousands of parameters each.
"""

from __future__ import annotations

import torch
from torch import nn

N_CLASSES = 5


class _Head(nn.Module):
    """Concatenate the morphology embedding with an RR embedding, then classify."""

    def __init__(self, n_embed: int, n_rr: int, n_out: int = N_CLASSES, hidden: int = 32) -> None:
        super().__init__()
        self.rr = nn.Sequential(nn.Linear(n_rr, 16), nn.ReLU())
        self.out = nn.Sequential(nn.Linear(n_embed + 16, hidden), nn.ReLU(), nn.Linear(hidden, n_out))

    def forward(self, embed: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        return self.out(torch.cat([embed, self.rr(rr)], dim=1))


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv1d(c_in, c_out, k, stride=stride, padding=k // 2, bias=False),
        nn.BatchNorm1d(c_out),
        nn.ReLU(),
    )


def _pool(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1)


CNN_WIDTH = 24


class CNN(nn.Module):
    """Plain 1D CNN: three conv blocks, global average + max pooling."""

    def __init__(self, n_leads: int, n_rr: int, width: int = CNN_WIDTH) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(n_leads, width // 2, 7), nn.MaxPool1d(2),
            _conv(width // 2, width, 5), nn.MaxPool1d(2),
            _conv(width, width, 3),
        )
        self.head = _Head(2 * width, n_rr)

    def forward(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        return self.head(_pool(self.body(beat)), rr)


class _ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.a = _conv(c_in, c_out, 5, stride)
        self.b = nn.Sequential(nn.Conv1d(c_out, c_out, 5, padding=2, bias=False), nn.BatchNorm1d(c_out))
        self.skip = (
            nn.Identity() if c_in == c_out and stride == 1
            else nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm1d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.b(self.a(x)) + self.skip(x))


class ResNet(nn.Module):
    """Small ResNet (Wang et al. 2017 time-series baseline, slimmed): stem + three residual blocks."""

    def __init__(self, n_leads: int, n_rr: int, width: int = 24) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv(n_leads, width // 2, 7),
            _ResBlock(width // 2, width, 2),
            _ResBlock(width, width, 2),
            _ResBlock(width, width, 1),
        )
        self.head = _Head(2 * width, n_rr)

    def forward(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        return self.head(_pool(self.body(beat)), rr)


class _Inception(nn.Module):
    """InceptionTime module (Ismail Fawaz et al. 2020): bottleneck, 3 kernel sizes, max-pool branch."""

    def __init__(self, c_in: int, nf: int, kernels: tuple[int, ...] = (9, 19, 39)) -> None:
        super().__init__()
        self.bottleneck = nn.Conv1d(c_in, nf, 1, bias=False) if c_in > 1 else nn.Identity()
        c_b = nf if c_in > 1 else c_in
        self.convs = nn.ModuleList(nn.Conv1d(c_b, nf, k, padding=k // 2, bias=False) for k in kernels)
        self.maxconv = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), nn.Conv1d(c_in, nf, 1, bias=False))
        self.bn = nn.BatchNorm1d(nf * (len(kernels) + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.bottleneck(x)
        return torch.relu(self.bn(torch.cat([c(b) for c in self.convs] + [self.maxconv(x)], dim=1)))


class InceptionTime(nn.Module):
    """InceptionTime-style: two inception modules (kernels scaled to the 128 Hz, 0.7 s window) + shortcut."""

    def __init__(self, n_leads: int, n_rr: int, nf: int = 8, n_out: int = N_CLASSES) -> None:
        super().__init__()
        self.pool = nn.AvgPool1d(2)  # 45 samples at 64 Hz: QRS and T-wave fit the kernels
        self.m1 = _Inception(n_leads, nf, (5, 11, 21))
        self.m2 = _Inception(4 * nf, nf, (5, 11, 21))
        self.short = nn.Sequential(nn.Conv1d(n_leads, 4 * nf, 1, bias=False), nn.BatchNorm1d(4 * nf))
        self.head = _Head(8 * nf, n_rr, n_out)

    def forward(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        x = self.pool(beat)
        y = torch.relu(self.m2(self.m1(x)) + self.short(x))
        return self.head(_pool(y), rr)


class LSTMNet(nn.Module):
    """Strided conv front end (halves the length) feeding a one-layer LSTM; last hidden state."""

    def __init__(self, n_leads: int, n_rr: int, hidden: int = 32) -> None:
        super().__init__()
        self.front = _conv(n_leads, 16, 5, stride=2)
        self.lstm = nn.LSTM(16, hidden, batch_first=True)
        self.head = _Head(hidden, n_rr)

    def forward(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        seq = self.front(beat).transpose(1, 2)
        _, (h, _) = self.lstm(seq)
        return self.head(h[-1], rr)


class MLP(nn.Module):
    """Dense net on the flattened window plus the RR features."""

    def __init__(self, n_leads: int, n_rr: int, window: int, hidden: int = 64) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Flatten(), nn.Linear(n_leads * window, hidden), nn.ReLU(), nn.Dropout(0.2),
            nn.Linear(hidden, 32), nn.ReLU(),
        )
        self.head = _Head(32, n_rr)

    def forward(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(beat), rr)


class AutoEncoder(nn.Module):
    """Dense autoencoder on window + RR; ``forward`` returns the per-beat reconstruction MSE."""

    def __init__(self, n_leads: int, n_rr: int, window: int, code: int = 12) -> None:
        super().__init__()
        n_in = n_leads * window + n_rr
        self.encoder = nn.Sequential(nn.Linear(n_in, 64), nn.ReLU(), nn.Linear(64, code))
        self.decoder = nn.Sequential(nn.ReLU(), nn.Linear(code, 64), nn.ReLU(), nn.Linear(64, n_in))
        self.rr_weight = 4.0  # RR features are few: weight them so rhythm counts next to shape

    def flat(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        return torch.cat([beat.flatten(1), self.rr_weight * (rr - 1.0)], dim=1)

    def forward(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        x = self.flat(beat, rr)
        return ((self.decoder(self.encoder(x)) - x) ** 2).mean(dim=1)


FAMILIES = ("cnn", "resnet", "inception", "lstm", "mlp")


def build(family: str, n_leads: int, n_rr: int, window: int, width: int = 0) -> nn.Module:
    """A fresh model of ``family`` (one of FAMILIES or "autoencoder"); ``width``: the cnn's
    channels (0: its default)."""
    if width and family != "cnn":
        raise ValueError(f"width={width}: only the cnn's width can be set")
    if width and width < 2:
        raise ValueError(f"width={width}: the cnn needs at least 2 channels (its first layer has half)")
    if family == "cnn":
        return CNN(n_leads, n_rr, width or CNN_WIDTH)
    if family == "resnet":
        return ResNet(n_leads, n_rr)
    if family == "inception":
        return InceptionTime(n_leads, n_rr)
    if family == "lstm":
        return LSTMNet(n_leads, n_rr)
    if family == "mlp":
        return MLP(n_leads, n_rr, window)
    if family == "autoencoder":
        return AutoEncoder(n_leads, n_rr, window)
    raise ValueError(f"unknown model family {family!r}; choose one of {FAMILIES + ('autoencoder',)}")


class Ensemble(nn.Module):
    """Members trained with different seeds; returns the log of their mean class probabilities
    (a softmax on top gives the averaged probabilities back)."""

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        self.members = nn.ModuleList(members)

    def forward(self, beat: torch.Tensor, rr: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m(beat, rr), dim=1) for m in self.members]).mean(dim=0)
        return torch.log(probs + 1e-12)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
