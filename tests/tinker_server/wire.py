"""The protobuf half of the wire format, with the SDK's own message definitions.

``forward_backward`` requests arrive as ``tinker_public_pb2.ForwardBackwardRequest`` (zstd-
compressed when the client config asks for it); ``ForwardBackwardOutput`` and ``SampleResponse``
results go back as protobuf, since the SDK refuses them as JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from tinker.proto import tinker_public_pb2 as pb

from .engine import SampledSequence, UserError

_NUMPY = {pb.DTYPE_FLOAT32: np.float32, pb.DTYPE_INT64: np.int64, pb.DTYPE_INT32: np.int32}
_STOP = {"stop": pb.STOP_REASON_STOP, "length": pb.STOP_REASON_LENGTH}


def decode_forward_backward(body: bytes) -> dict[str, Any]:
    """``{model_id, seq_id, loss_fn, config, forward_only, data: [{tokens, inputs}]}``."""
    msg = pb.ForwardBackwardRequest()
    msg.ParseFromString(body)
    config = {k: v for k, v in msg.loss_fn_config.items()}
    for key, value in msg.loss_fn_config_v2.items():
        if value.WhichOneof("value") == "number":
            config[key] = value.number
    data = []
    for datum in msg.data:
        tokens: list[int] = []
        for chunk in datum.model_input:
            if chunk.WhichOneof("chunk") != "encoded_text":
                raise UserError("this server only takes encoded_text chunks")
            tokens += np.frombuffer(chunk.encoded_text.tokens, dtype=np.int32).tolist()
        inputs = {name: _tensor(t) for name, t in datum.loss_fn_inputs.items()}
        data.append({"tokens": tokens, "inputs": inputs})
    return {
        "model_id": msg.model_id,
        "seq_id": msg.seq_id,
        "loss_fn": msg.loss_fn,
        "config": config,
        "forward_only": msg.forward_only,
        "data": data,
    }


def encode_forward_backward(
    outputs: list[dict[str, torch.Tensor]], metrics: dict[str, float]
) -> bytes:
    """One batched ``ArrayRecord`` of float32 fields, one slice per datum."""
    msg = pb.ForwardBackwardOutput(loss_fn_output_type="ArrayRecord", metrics=metrics)
    record = msg.loss_fn_outputs.add(type_tag="ArrayRecord", num_datums=len(outputs))
    for name in outputs[0] if outputs else ():
        arrays = [o[name].numpy().astype(np.float32) for o in outputs]
        offsets = np.cumsum([0] + [a.nbytes for a in arrays]).astype(np.int64)
        field = record.fields[name]
        field.data = b"".join(a.tobytes() for a in arrays)
        field.offsets = offsets.tobytes()
        field.dtype = pb.DTYPE_FLOAT32
    return msg.SerializeToString()


def encode_sample(sequences: list[SampledSequence], prompt_logprobs: list[float] | None) -> bytes:
    msg = pb.SampleResponse()
    for seq in sequences:
        msg.sequences.add(
            stop_reason=_STOP[seq.stop_reason],
            tokens=np.asarray(seq.tokens, dtype=np.int32).tobytes(),
            logprobs=np.asarray(seq.logprobs, dtype=np.float32).tobytes(),
        )
    if prompt_logprobs is not None:
        msg.prompt_logprobs = np.asarray(prompt_logprobs, dtype=np.float32).tobytes()
    return msg.SerializeToString()


def _tensor(msg: Any) -> torch.Tensor:
    if msg.WhichOneof("encoding") != "dense":
        raise UserError("this server only takes dense tensors")
    array = np.frombuffer(msg.dense, dtype=_NUMPY[msg.dtype]).copy()
    return torch.from_numpy(array.reshape(list(msg.shape) or [-1]))
