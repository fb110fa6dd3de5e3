"""The Whisper encoder as a core: hidden states at the pooled positions, for torch and fast backends.

:func:`whisper_states` is the exact computation the audio modality runs (Whisper's own encoder, built
from its submodules so that any even number of mel frames runs on its own positions, and the last
layer queried only at the positions that are pooled). :func:`whisper_core` offers the same
computation to the fast backends (:mod:`multiembed.fast`): one traced function whose two inputs
carry every shape, so a single OpenVINO model serves every window length (30 s, or the shorter ones
``pad_seconds`` feeds it) and every number of pooled positions:

- ``input_features`` [windows, mels, 2P]: the log-mel frames, as the exact path gets them;
- ``frame_mask`` [windows, Q]: 1 on each window's real encoder frames; its width Q (the most real
  frames in the group) is how many positions the last layer queries, so a traced slice, not a
  constant baked in at export, limits the last layer as the exact path does.

The core returns the states [windows, Q, d]; the masked mean over real frames, the frame-weighted
sum over a clip's windows and the normalisation stay in the modality's torch code. A core call runs
one group of windows of equal length (Whisper has no attention mask, so windows are never padded to
a neighbour's length): :class:`WindowRunner` feeds the compiled core group by group.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from multiembed.encoder import ModelOutput
    from multiembed.fast.core import CoreInputs, ExportableCore
else:
    from multiembed.lazy import torch

#: names of the core's inputs, in the order the traced function takes them
CORE_INPUTS = ("input_features", "frame_mask")


def _below_last(encoder: Any, features: torch.Tensor) -> torch.Tensor:
    """Convolutions, positions 0..P-1 and every layer but the last, for ``features`` [B, mels, 2P]."""
    functional = torch.nn.functional
    hidden = functional.gelu(encoder.conv2(functional.gelu(encoder.conv1(features)))).permute(0, 2, 1)
    hidden = hidden + encoder.embed_positions.weight[: hidden.shape[1]]
    for layer in encoder.layers[:-1]:
        hidden = layer(hidden, None)
    return hidden  # type: ignore[no-any-return]


def _last_at(encoder: Any, hidden: torch.Tensor, queries: Any) -> torch.Tensor:
    """The last layer and final norm at the first ``queries`` positions; keys and values at all."""
    last = encoder.layers[-1]
    normed = last.self_attn_layer_norm(hidden)
    attended, _ = last.self_attn(hidden_states=normed[:, :queries], key_value_states=normed)
    hidden = hidden[:, :queries] + attended
    hidden = hidden + last.fc2(last.activation_fn(last.fc1(last.final_layer_norm(hidden))))
    if hidden.dtype == torch.float16:  # as WhisperEncoderLayer does
        clamp = torch.finfo(hidden.dtype).max - 1000
        hidden = hidden.clamp(min=-clamp, max=clamp)
    return encoder.layer_norm(hidden)  # type: ignore[no-any-return]


def whisper_states(encoder: Any, features: torch.Tensor, queries: int) -> torch.Tensor:
    """The Whisper encoder's last hidden states [B, queries, d] for log-mel ``features`` [B, mels, 2P].

    The same computation as ``WhisperEncoder.forward`` (which accepts only 3000 mel frames), built
    from its submodules so that a window of any even length runs on its own P positions, with the
    positional embeddings 0..P-1. The last layer computes keys and values at every position but
    queries, feed-forward and final norm only at the first ``queries`` ones: the positions pooled.
    """
    hidden = _below_last(encoder, features)
    if queries >= hidden.shape[1]:
        return encoder.layer_norm(encoder.layers[-1](hidden, None))  # type: ignore[no-any-return]
    return _last_at(encoder, hidden, queries)


def core_states(encoder: Any, inputs: CoreInputs) -> torch.Tensor:
    """The traced core: :func:`whisper_states` with the queried positions read off ``frame_mask``'s width.

    Always the sliced last layer (slicing all P positions is the full layer, the same arithmetic), so
    tracing records no branch on the example's lengths; the width is a shape, so it stays dynamic.
    """
    hidden = _below_last(encoder, inputs["input_features"])
    return _last_at(encoder, hidden, inputs["frame_mask"].shape[-1])


def group_inputs(features: torch.Tensor, counts: torch.Tensor) -> CoreInputs:
    """The core's inputs for one group of equal-length windows and their real frames."""
    width = min(int(counts.max()), features.shape[-1] // 2)
    mask = torch.arange(width, device=counts.device).unsqueeze(0) < counts.unsqueeze(1)
    return {"input_features": features, "frame_mask": mask.to(torch.int64)}


def batch_inputs(batch: dict[str, Any]) -> CoreInputs:
    """The core's inputs for a preprocessed batch as a core call takes it: a group, or a whole batch.

    The pipeline hands groups (``group_inputs``). The fast backends' calibration and export example
    hand whole preprocessed batches, which hold one group per window length: every window is kept,
    cut to the shortest length, so each is still a window the fast mode could feed (its mel frames
    cut as ``pad_seconds`` cuts them) and calibration sees all of the sample's audio.
    """
    if "input_features" in batch:
        return {name: batch[name] for name in CORE_INPUTS}
    groups = batch["groups"]
    if not groups:
        raise ValueError("a batch of streamed files only: no windows to calibrate on")
    length = min(int(features.shape[-1]) for features, _, _ in groups)
    features = torch.cat([features[..., :length] for features, _, _ in groups])
    counts = torch.cat([counts for _, counts, _ in groups]).clamp(max=length // 2)
    return group_inputs(features, counts)


class WindowRunner:
    """A compiled core run group by group: what an audio encoder's ``fast`` slot holds.

    The fast backends call a core once per preprocessed batch, but an audio batch holds one group per
    window length, plus long files decoded as they are embedded. The encoder keeps its own loop over
    groups and streams (``run``, its forward with a states function) and asks ``core`` (the backend's
    runner) for each group's states.
    """

    def __init__(
        self,
        core: Callable[[Any], ModelOutput],
        run: Callable[[Any, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]], ModelOutput],
    ) -> None:
        self.core = core
        self._run = run

    def states(self, features: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return self.core(group_inputs(features, counts)).hidden

    def __call__(self, batch: Any) -> ModelOutput:
        return self._run(batch, self.states)

    def __repr__(self) -> str:
        return f"WindowRunner({self.core!r})"


def whisper_core(encoder: Any, documents: Sequence[Any], queries: Sequence[Any]) -> ExportableCore:
    """The Whisper encoder as an :class:`~multiembed.fast.core.ExportableCore` (see the module docstring)."""
    from multiembed.encoder import ModelOutput
    from multiembed.fast.core import ExportableCore

    return ExportableCore(
        module=encoder,
        input_names=CORE_INPUTS,
        run=core_states,
        inputs=batch_inputs,
        output=lambda hidden, batch: ModelOutput(hidden=hidden),
        documents=documents,
        queries=queries,
    )
