"""Inference server for a model trained by aidp; runs on the node with the node's python.

Standard library HTTP (no web framework on the node) plus torch + transformers:

- ``GET /v2/health/ready``, ``/v2/health/live``, ``/v2/models/{name}``, ``/v2/models/{name}/ready``
- ``POST /v2/models/{name}/infer``  Open Inference Protocol v2: a BYTES input tensor of
  texts → outputs ``label`` (BYTES) and ``score`` (FP32) (causal-lm: ``generated_text``)
- ``POST /predict {"inputs": [...]}`` → ``{"outputs": [{"label", "score"}]}``
  (causal-lm: ``[{"generated_text"}]``)
- tasks ``causal-lm`` and ``chat`` also speak the OpenAI API (``llm.py``): ``GET /v1/models``,
  ``POST /v1/chat/completions``, ``POST /v1/completions`` (``stream: true``: server-sent
  events in a chunked answer); other tasks answer those with an OpenAI-shaped 404

Usage: ``server.py --model-dir DIR --name NAME --task TASK --port 0 --port-file FILE
--log-file FILE [--unix-socket PATH] [--token-file FILE] [--engine auto|transformers|vllm]
[--base-model-dir DIR]`` (``--base-model-dir``: the base of a LoRA adapter model). With
port 0 the OS picks one; the chosen port (or the socket) and the pid are written to
``--port-file`` (JSON) once the model is loaded and the socket listens.

A Keras 3 archive (``model.keras``) or a SavedModel in the model folder is served by
``keras_engine.py`` (TensorFlow, no torch) through the same routes.

Only the platform may call it: in a local sandbox it listens on a Unix socket in the
deployment's workspace (its network namespace has no route out, and no other tenant sees the
folder); on a remote node it listens on loopback and every request must carry
``Authorization: Bearer <the token in --token-file>`` (compared in constant time).
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import socket
import socketserver
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

try:  # on a node: staged beside this file
    import serving_keras_engine as keras_engine  # type: ignore[import-not-found]
except ImportError:  # in the repository
    from services.trainer.model_server import keras_engine

try:  # on a node: staged beside this file
    import serving_llm as llm  # type: ignore[import-not-found]
    import serving_openai_answers as answers  # type: ignore[import-not-found]
    import serving_openai_wire as wire  # type: ignore[import-not-found]
except ImportError:  # in the repository
    from services.trainer.model_server import llm
    from services.trainer.model_server import openai_answers as answers
    from services.trainer.model_server import openai_wire as wire

if TYPE_CHECKING:
    from services.trainer.model_server.vllm_engine import VLLMEngine

MAX_BODY = 8 * 1024 * 1024
MAX_INPUTS = 256


class Model:
    """A loaded model: safetensors only, never remote code."""

    def __init__(
        self,
        model_dir: str,
        task: str,
        *,
        name: str = "model",
        engine: str = "auto",
        base_dir: str | None = None,
    ) -> None:
        import torch
        from transformers import AutoTokenizer

        self.task = task
        self.torch = torch
        self.lock = threading.Lock()
        self.engine: llm.TransformersEngine | VLLMEngine | None = None
        if task in llm.LLM_TASKS:
            self.engine = llm.load_engine(model_dir, name, engine=engine, base_dir=base_dir)
            return
        kwargs: dict[str, Any] = {
            "trust_remote_code": False,
            "local_files_only": True,
            "use_safetensors": True,
        }
        self.tokenizer = AutoTokenizer.from_pretrained(
            model_dir, trust_remote_code=False, local_files_only=True
        )
        from transformers import AutoModelForSequenceClassification

        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, **kwargs)
        self.model.eval()

    def predict(self, inputs: list[str]) -> list[dict[str, Any]]:
        if self.engine is not None:
            return self.engine.predict(inputs)
        torch = self.torch
        with self.lock, torch.no_grad():
            enc = self.tokenizer(inputs, truncation=True, padding=True, return_tensors="pt")
            probs = torch.softmax(self.model(**enc).logits.float(), dim=-1)
            scores, ids = probs.max(dim=-1)
            id2label: dict[Any, Any] = dict(self.model.config.id2label or {})
            return [
                {"label": str(id2label.get(int(i), int(i))), "score": float(s)}
                for i, s in zip(ids.tolist(), scores.tolist(), strict=True)
            ]


class UnixHTTPServer(socketserver.ThreadingUnixStreamServer):
    """The HTTP server on a Unix socket (the local sandbox's only way in)."""

    daemon_threads = True


class Handler(BaseHTTPRequestHandler):
    """The routes (module docstring); :func:`make_handler` binds a model, its name and the
    bearer token to a subclass, one per server."""

    protocol_version = "HTTP/1.1"
    model: Any  #: the loaded model (:class:`Model` or a Keras one)
    name: str  #: the model's name in the routes
    token: str | None = None  #: the bearer token every request must carry, if any
    engine: Any = None  #: an LLM engine (tasks causal-lm, chat): the OpenAI API

    def setup(self) -> None:
        super().setup()
        if self.connection.family in (socket.AF_INET, socket.AF_INET6):  # tokens go at once
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def address_string(self) -> str:  # a Unix socket's peer has no address
        return str(self.client_address[0]) if self.client_address else "unix"

    def _authorised(self) -> bool:
        if self.token is None:
            return True
        sent = self.headers.get("Authorization") or ""
        if hmac.compare_digest(sent.encode(), f"Bearer {self.token}".encode()):
            return True
        self._send(401, {"error": "unauthorised"})
        return False

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("request body too large")
        return json.loads(self.rfile.read(length) or b"{}")

    def do_GET(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        path = self.path.split("?")[0].rstrip("/")
        name = self.name
        if path in ("/v2/health/ready", "/v2/health/live", f"/v2/models/{name}/ready"):
            self._send(200, {"ready": True})
        elif path == f"/v2/models/{name}":
            self._send(200, _model_metadata(self.model, name))
        elif path == "/v2":
            self._send(200, {"name": "aidp-serving", "version": "1", "extensions": []})
        elif path == "/v1/models":
            if self.engine is None:
                self._no_openai()
            else:
                self._send(200, self.engine.models())
        else:
            self._send(404, {"error": f"no route {path}"})

    def do_POST(self) -> None:  # noqa: N802
        if not self._authorised():
            return
        path = self.path.split("?")[0].rstrip("/")
        if path.startswith("/v1/"):
            self._openai(path)
            return
        try:
            body = self._body()
            if path == "/predict":
                texts = _texts(body.get("inputs"))
                self._send(200, {"outputs": self.model.predict(texts)})
            elif path == f"/v2/models/{self.name}/infer":
                tensors = body.get("inputs") or []
                if not tensors:
                    raise ValueError("inputs: one BYTES tensor of texts expected")
                texts = _texts(tensors[0].get("data"))
                results = self.model.predict(texts)
                self._send(200, _v2_response(self.name, body.get("id"), results))
            else:
                self._send(404, {"error": f"no route {path}"})
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            self._send(400, {"error": str(exc)})

    # -- the OpenAI API (tasks causal-lm and chat) -------------------------------------------

    def _no_openai(self) -> None:
        self._send(
            404,
            wire.error_body(
                f"this deployment serves the task {self.model.task}; the OpenAI API is served "
                f"for {' and '.join(llm.LLM_TASKS)} models",
                code="not_found",
            ),
        )

    def _openai(self, path: str) -> None:
        if self.engine is None:
            self._no_openai()
            return
        try:
            try:
                body = self._body()
            except ValueError as exc:
                raise wire.OpenAIError(f"the request body is not valid JSON: {exc}") from None
            answer = self.engine.openai(path, body)
        except wire.OpenAIError as exc:
            self._send(exc.status, exc.body())
            return
        except Exception as exc:  # the engine failed: the client's request was fine
            sys.stderr.write(f"openai {path} failed: {exc!r}\n")
            self._send(
                500,
                wire.error_body(
                    f"generation failed: {exc}", type="server_error", code="generation_failed"
                ),
            )
            return
        if answer.stream is None:
            self._send(answer.status, answer.body)
        else:
            self._send_stream(answer.status, answer.content_type, answer.stream)

    def _send_stream(self, status: int, content_type: str, chunks: Iterator[bytes]) -> None:
        """A chunked answer, each piece sent as it comes; a client gone stops the source."""
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            try:
                for data in chunks:
                    if data:
                        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as exc:  # after the headers: the error as the last event
                sys.stderr.write(f"stream failed: {exc!r}\n")
                error = answers.sse(wire.error_body(str(exc), type="server_error"))
                self.wfile.write(b"%x\r\n%s\r\n" % (len(error), error))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        sys.stderr.write(f"{self.address_string()} {format % args}\n")


def make_handler(model: Model, name: str, token: str | None = None) -> type[BaseHTTPRequestHandler]:
    """The request handler class serving ``model`` as ``name`` (``token``: required bearer)."""
    bound = {
        "model": model,
        "name": name,
        "token": token,
        "engine": getattr(model, "engine", None),  # an LLM engine (tasks causal-lm, chat)
    }
    return type("Handler", (Handler,), bound)


def _model_metadata(model: Any, name: str) -> dict[str, Any]:
    """``GET /v2/models/{name}``: the model's Open Inference Protocol metadata."""
    return {
        "name": name,
        "platform": getattr(model, "platform", "pytorch"),
        "versions": ["1"],
        "inputs": [{"name": "text", "datatype": "BYTES", "shape": [-1]}],
    }


def _texts(inputs: Any) -> list[str]:
    if not isinstance(inputs, list) or not inputs:
        raise ValueError("inputs must be a non-empty list")
    if len(inputs) > MAX_INPUTS:
        raise ValueError(f"at most {MAX_INPUTS} inputs per request")
    return [x if isinstance(x, str) else json.dumps(x) for x in inputs]


def _v2_response(name: str, request_id: Any, results: list[dict[str, Any]]) -> dict[str, Any]:
    n = len(results)
    if results and "generated_text" in results[0]:
        outputs = [
            {
                "name": "generated_text",
                "datatype": "BYTES",
                "shape": [n],
                "data": [r["generated_text"] for r in results],
            }
        ]
    else:
        outputs = [
            {
                "name": "label",
                "datatype": "BYTES",
                "shape": [n],
                "data": [r["label"] for r in results],
            },
            {
                "name": "score",
                "datatype": "FP32",
                "shape": [n],
                "data": [r["score"] for r in results],
            },
        ]
    response: dict[str, Any] = {"model_name": name, "model_version": "1", "outputs": outputs}
    if request_id is not None:
        response["id"] = request_id
    return response


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--name", default="model")
    parser.add_argument("--task", default="text-classification")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log-file")
    parser.add_argument("--unix-socket", help="listen here instead of host:port")
    parser.add_argument("--token-file", help="require this bearer token on every request")
    parser.add_argument(
        "--engine", default="auto", choices=["auto", "transformers", "vllm"], help="LLM engine"
    )
    parser.add_argument("--base-model-dir", help="the base model of a LoRA adapter")
    args = parser.parse_args()
    if args.log_file:  # output must not depend on a pipe the trainer may stop reading
        log = open(args.log_file, "a", buffering=1)  # noqa: SIM115
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    token = None
    if args.token_file:
        with open(args.token_file) as fh:
            token = fh.read().strip()
    model: Any
    if keras_engine.is_keras_model(args.model_dir):  # a Keras 3 / SavedModel export
        model = keras_engine.KerasModel(args.model_dir, args.task)
    else:
        model = Model(
            args.model_dir,
            args.task,
            name=args.name,
            engine=args.engine,
            base_dir=args.base_model_dir,
        )
    handler = make_handler(model, args.name, token)
    server: socketserver.BaseServer
    if args.unix_socket:
        # bind relative to the socket's folder: sun_path holds only 107 bytes
        folder, sock_name = os.path.split(os.path.abspath(args.unix_socket))
        os.chdir(folder)
        if os.path.lexists(sock_name):
            os.unlink(sock_name)
        server = UnixHTTPServer(sock_name, handler)
        address: dict[str, Any] = {"socket": sock_name}
    else:
        tcp = ThreadingHTTPServer((args.host, args.port), handler)
        server, address = tcp, {"port": tcp.server_address[1]}
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({**address, "pid": os.getpid()}, fh)
    os.replace(tmp, args.port_file)
    server.serve_forever()


if __name__ == "__main__":
    main()
