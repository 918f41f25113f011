"""The baseline server of P2: one trivial JSON POST route in the same uvicorn set-up as hookline.

`uvicorn.Config` as `hookline.cli._serve_http` builds it (loop and HTTP parser "auto", so
uvloop and httptools; no access log; no server header; log level info); the handler parses
the same fields as `POST /users/messages` with a plain pydantic model and answers 201 JSON.

    .venv/bin/python bench/_bare_app.py PORT
"""

import sys

import uvicorn
from fastapi import FastAPI, status
from pydantic import BaseModel

app = FastAPI()


class Message(BaseModel):
    sender: str
    recipient: str
    subject: str = ""
    message: str


@app.post("/users/messages", status_code=status.HTTP_201_CREATED)
async def send_message(body: Message) -> dict[str, str]:
    return {"id": "msg_bare", **body.model_dump()}


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


if __name__ == "__main__":
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="info",
        access_log=False,
        server_header=False,
    )
    uvicorn.Server(config).run()
