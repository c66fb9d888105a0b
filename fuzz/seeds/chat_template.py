#!/usr/bin/env python3
"""Seed corpus for the `chat_template` target: DIR gets three hand-written inputs (a template, a
conversation, a ChatML template with `raise_exception`), and with --llama-cpp the 71 model
templates that llama-cpp-python 0.3.36's sdist carries (vendor/llama.cpp/models/templates),
each as a template input (first byte even).

    python3 fuzz/seeds/chat_template.py fuzz/corpus/chat_template [--llama-cpp]
"""
import io
import pathlib
import subprocess
import sys
import tarfile
import tempfile

HAND = [
    b"\x00{% for m in messages %}{{ m.role }}: {{ m.content }}\n{% endfor %}"
    b"{% if add_generation_prompt %}assistant:{% endif %}",
    b"\x01user\x00Hello\x00assistant\x00Hi there\x00user\x00What is 2+2?",
    b"\x00{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
    b"{{ '<|im_start|>system\n' + message['content'] | trim + '<|im_end|>\n' }}"
    b"{% elif loop.index0 % 2 == 1 %}{{ raise_exception('roles must alternate') }}"
    b"{% else %}{{ '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>\n' }}"
    b"{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}"
    b"{% endif %}{{ eos_token }}",
]


def main() -> None:
    out = pathlib.Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(HAND):
        (out / f"hand{i}").write_bytes(seed)
    if "--llama-cpp" in sys.argv[2:]:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
                 "llama-cpp-python", "llama-cpp-python==0.3.36", "-d", tmp],
                check=True,
            )
            sdist = next(pathlib.Path(tmp).glob("llama_cpp_python-0.3.36.tar.gz"))
            with tarfile.open(sdist) as tar:
                for member in tar.getmembers():
                    p = pathlib.PurePosixPath(member.name)
                    if p.suffix == ".jinja" and "models/templates" in member.name:
                        data = tar.extractfile(member).read()
                        (out / f"llama-cpp-{p.stem}").write_bytes(b"\x00" + data)
    print(f"{len(list(out.iterdir()))} seeds in {out}")


if __name__ == "__main__":
    main()
