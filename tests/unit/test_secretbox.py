"""Endpoint secrets at rest: sealing, opening, key rotation and the generated key file."""

import contextlib
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from hookline import secretbox
from hookline.config import Settings
from hookline.delivery import signing
from hookline.secretbox import SEALED_PREFIX, SecretBox, SecretKeyError


def new_box() -> SecretBox:
    return SecretBox([secretbox.generate_key()])


def settings_in(data_dir: Path, secret_key: str | None = None) -> Settings:
    # secret_key passed explicitly, so a HOOKLINE_SECRET_KEY in the environment cannot leak in.
    return Settings(_env_file=None, data_dir=data_dir, secret_key=secret_key)


def windows(text: str, size: int = 8) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def test_a_sealed_secret_opens_to_its_plaintext() -> None:
    box = new_box()
    secret = signing.generate_secret()

    sealed = box.seal(secret)

    assert sealed.startswith(SEALED_PREFIX)
    assert box.open(sealed) == secret


def test_sealing_twice_gives_different_text_that_reveals_no_part_of_the_secret() -> None:
    box = new_box()
    secret = signing.generate_secret()
    encoded = secret.removeprefix(signing.SECRET_PREFIX)

    first, second = box.seal(secret), box.seal(secret)

    assert first != second
    for sealed in (first, second):
        assert signing.SECRET_PREFIX not in sealed
        assert not any(part in sealed for part in windows(encoded))


@pytest.mark.parametrize(
    "stored",
    [signing.generate_secret(), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "not-even-a-secret", ""],
    # Ids that do not change between collections (parallel workers must collect alike).
    ids=["generated", "fixed", "not-a-secret", "empty"],
)
def test_a_secret_stored_before_sealing_opens_as_it_is(stored: str) -> None:
    assert new_box().open(stored) == stored


def test_a_box_with_another_key_cannot_open_and_names_the_setting() -> None:
    sealed = new_box().seal(signing.generate_secret())

    with pytest.raises(SecretKeyError, match="HOOKLINE_SECRET_KEY"):
        new_box().open(sealed)


def test_a_tampered_sealed_secret_does_not_open() -> None:
    box = new_box()
    sealed = box.seal(signing.generate_secret())
    flipped = "A" if sealed[-5] != "A" else "B"

    with pytest.raises(SecretKeyError, match="HOOKLINE_SECRET_KEY"):
        box.open(sealed[:-5] + flipped + sealed[-4:])


def test_new_comma_old_keys_open_both_and_seal_with_the_new_one() -> None:
    new_key, old_key = secretbox.generate_key(), secretbox.generate_key()
    old_box, new_box_only = SecretBox([old_key]), SecretBox([new_key])
    rotating = SecretBox([new_key, old_key])
    before = signing.generate_secret()
    sealed_before = old_box.seal(before)
    after = signing.generate_secret()

    sealed_after = rotating.seal(after)

    assert rotating.open(sealed_before) == before
    assert rotating.open(sealed_after) == after
    assert new_box_only.open(sealed_after) == after
    with pytest.raises(SecretKeyError):
        old_box.open(sealed_after)


def test_keys_are_split_on_commas_with_spaces_around_them() -> None:
    new_key, old_key = secretbox.generate_key(), secretbox.generate_key()
    sealed = SecretBox([old_key]).seal("whsec_c2VjcmV0")

    box = secretbox.load(settings_in(Path("unused"), f" {new_key} , {old_key} "))

    assert box.open(sealed) == "whsec_c2VjcmV0"
    assert SecretBox([new_key]).open(box.seal("x")) == "x"


def test_reseal_moves_a_secret_from_the_old_key_to_the_new_one() -> None:
    new_key, old_key = secretbox.generate_key(), secretbox.generate_key()
    secret = signing.generate_secret()
    sealed_old = SecretBox([old_key]).seal(secret)

    resealed = SecretBox([new_key, old_key]).reseal(sealed_old)

    assert resealed.startswith(SEALED_PREFIX)
    assert resealed != sealed_old
    assert SecretBox([new_key]).open(resealed) == secret
    with pytest.raises(SecretKeyError):
        SecretBox([old_key]).open(resealed)


def test_reseal_of_a_secret_the_keys_do_not_open_is_a_secret_key_error() -> None:
    sealed = new_box().seal(signing.generate_secret())

    with pytest.raises(SecretKeyError, match="HOOKLINE_SECRET_KEY"):
        new_box().reseal(sealed)


def test_reseal_seals_a_secret_stored_in_plain_text() -> None:
    box = new_box()
    secret = signing.generate_secret()

    resealed = box.reseal(secret)

    assert resealed.startswith(SEALED_PREFIX)
    assert secret.removeprefix(signing.SECRET_PREFIX) not in resealed
    assert box.open(resealed) == secret


@pytest.mark.parametrize(
    "keys",
    [
        [],
        [""],
        ["not-a-key"],
        ["c2hvcnQ="],  # valid base64, 5 bytes
        [Fernet.generate_key().decode()[:-2]],  # cut short
        [secretbox.generate_key(), ""],  # "new," with nothing after the comma
        [secretbox.generate_key(), "not-a-key"],
    ],
    ids=["none", "empty", "not-base64", "too-short", "truncated", "trailing-comma", "bad-old-key"],
)
def test_a_malformed_key_is_a_secret_key_error(keys: list[str]) -> None:
    with pytest.raises(SecretKeyError):
        SecretBox(keys)


def test_a_malformed_configured_key_says_how_to_make_a_good_one(tmp_path: Path) -> None:
    with pytest.raises(SecretKeyError, match=r"HOOKLINE_SECRET_KEY.*`hookline secret-key`"):
        secretbox.load(settings_in(tmp_path / "data", "not-a-key"))


def test_generated_keys_are_distinct_fernet_keys() -> None:
    first, second = secretbox.generate_key(), secretbox.generate_key()

    assert first != second
    for key in (first, second):
        assert Fernet(key.encode()).decrypt(Fernet(key.encode()).encrypt(b"x")) == b"x"


def test_a_configured_key_is_used_and_no_key_file_is_written(tmp_path: Path) -> None:
    key = secretbox.generate_key()
    data_dir = tmp_path / "data"

    sealed = secretbox.load(settings_in(data_dir, key)).seal("whsec_c2VjcmV0")

    assert SecretBox([key]).open(sealed) == "whsec_c2VjcmV0"
    assert not data_dir.exists()


def test_without_a_configured_key_one_is_generated_into_an_owner_only_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"

    box = secretbox.load(settings_in(data_dir))

    key_file = data_dir / secretbox.SECRET_KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert SecretBox([key]).open(box.seal("whsec_c2VjcmV0")) == "whsec_c2VjcmV0"
    assert sorted(p.name for p in data_dir.iterdir()) == [secretbox.SECRET_KEY_FILE]


def test_the_generated_key_file_is_reused_by_later_loads(tmp_path: Path) -> None:
    settings = settings_in(tmp_path / "data")
    sealed = secretbox.load(settings).seal("whsec_c2VjcmV0")
    key_file = tmp_path / "data" / secretbox.SECRET_KEY_FILE
    written = key_file.read_text()

    again = secretbox.load(settings)

    assert again.open(sealed) == "whsec_c2VjcmV0"
    assert key_file.read_text() == written


def assert_one_key_for_all(boxes: list[SecretBox], key_file: Path) -> None:
    file_box = SecretBox([key_file.read_text().strip()])
    for box in boxes:
        assert file_box.open(box.seal("whsec_c2VjcmV0")) == "whsec_c2VjcmV0"
    assert sorted(p.name for p in key_file.parent.iterdir()) == [key_file.name]


def test_threads_loading_at_once_end_with_one_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_in(tmp_path / "data")
    # Hold each thread just after it opened its draft, until the other one has opened its own:
    # the interleaving two first starts can always have. A fix that serializes the writes
    # makes the wait time out, and the thread goes on.
    both_drafting = threading.Barrier(2, timeout=1)
    generate = secretbox.generate_key

    def generate_when_both_draft() -> str:
        with contextlib.suppress(threading.BrokenBarrierError):
            both_drafting.wait()
        return generate()

    monkeypatch.setattr(secretbox, "generate_key", generate_when_both_draft)
    boxes: list[SecretBox] = []
    errors: list[BaseException] = []

    def load() -> None:
        try:
            boxes.append(secretbox.load(settings))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert_one_key_for_all(boxes, tmp_path / "data" / secretbox.SECRET_KEY_FILE)


LOAD_AND_SEAL = """
import sys, time
from pathlib import Path
from hookline import secretbox
from hookline.config import Settings
go = Path(sys.argv[2])
Path(sys.argv[3]).touch()
while not go.exists():
    time.sleep(0.001)
box = secretbox.load(Settings(_env_file=None, data_dir=sys.argv[1], secret_key=None))
print(box.seal("whsec_c2VjcmV0"))
"""


def test_processes_loading_at_once_end_with_one_key(tmp_path: Path) -> None:
    data_dir, go = tmp_path / "data", tmp_path / "go"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOOKLINE_")}
    processes = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                LOAD_AND_SEAL,
                str(data_dir),
                str(go),
                str(tmp_path / f"ready{n}"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(4)
    ]
    # Started together once all four have imported and wait at the line: the race is the point.
    deadline = time.monotonic() + 30
    while len(list(tmp_path.glob("ready*"))) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outputs = [process.communicate(timeout=30) for process in processes]

    assert [process.returncode for process in processes] == [0] * 4, outputs
    file_box = SecretBox([(data_dir / secretbox.SECRET_KEY_FILE).read_text().strip()])
    assert [file_box.open(out.strip()) for out, _ in outputs] == ["whsec_c2VjcmV0"] * 4
    assert sorted(p.name for p in data_dir.iterdir()) == [secretbox.SECRET_KEY_FILE]
