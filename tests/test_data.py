"""Loading Common Voice from each source that works offline, tsv quirks, and one clear sentence per bad source."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from helpers.data import DataSourceError, load_common_voice, read_cv_tsv

CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment"


def tsv_rows(path: Path) -> list[list[str]]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines[1:] if line.strip()]


def clear_error(source) -> str:
    """The message of the ``DataSourceError`` that loading ``source`` raises: one sentence, one line."""
    with pytest.raises(DataSourceError) as caught:
        load_common_voice(source)
    message = str(caught.value)
    assert "\n" not in message and message.endswith((".", ")")) and len(message) < 400, message
    return message


def small_cv_folder(folder: Path, corpus: Path, splits=("train", "dev", "test"), rows: int = 3) -> Path:
    """A Common Voice locale folder with the first ``rows`` rows of each of ``splits`` from the bundled corpus."""
    (folder / "clips").mkdir(parents=True)
    for split in splits:
        lines = (corpus / f"{split}.tsv").read_text(encoding="utf-8").splitlines()[: rows + 1]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        for line in lines[1:]:
            name = line.split("\t")[1]
            shutil.copy(corpus / "clips" / name, folder / "clips" / name)
    return folder


def test_local_release_folder_holds_a_seeded_slice_of_dev_out_for_validation(corpus):
    splits = load_common_voice(corpus, validation_size=8)
    train_rows, dev_rows = tsv_rows(corpus / "train.tsv"), tsv_rows(corpus / "dev.tsv")
    test_rows = tsv_rows(corpus / "test.tsv")
    assert list(splits) == ["train", "validation", "test"]
    assert splits["train"].column_names == ["audio", "sentence"] == splits["validation"].column_names
    dev = [row[2] for row in dev_rows]
    validation = splits["validation"]["sentence"]
    # 8 of dev's 12 clips, in dev's order; its other 4 train after train.tsv's rows, as the course merges them.
    assert len(validation) == 8 and validation == [s for s in dev if s in validation]
    assert splits["train"]["sentence"] == [row[2] for row in train_rows] + [s for s in dev if s not in validation]
    assert splits["test"]["sentence"] == [row[2] for row in test_rows]
    first = splits["train"][0]["audio"]
    assert first["path"] == str(corpus / "clips" / train_rows[0][1]) and first["bytes"] is None  # undecoded
    # The same seed gives the same slice (a resumed run chooses on the same clips); another seed another.
    assert load_common_voice(corpus, validation_size=8)["validation"]["sentence"] == validation
    assert load_common_voice(corpus, seed=1, validation_size=8)["validation"]["sentence"] != validation
    assert load_common_voice(corpus)["validation"]["sentence"] == dev  # a dev split smaller than the size: all of it


def audio_paths(split) -> set[str]:
    return {audio["path"] for audio in split["audio"]}


def assert_disjoint(splits) -> None:
    """No clip in two splits: validation never trains, and test is neither trained on nor chooses."""
    train, validation, test = (audio_paths(splits[name]) for name in ("train", "validation", "test"))
    assert validation and test and not (train & validation) and not (train & test) and not (validation & test)


def test_folder_above_the_locale_folder_and_a_tsv_path_are_found(tmp_path, corpus):
    release = tmp_path / "drive" / "cv-corpus-23.0-2025-09-05"
    release.mkdir(parents=True)
    (release / "si").symlink_to(corpus, target_is_directory=True)
    expected = load_common_voice(corpus)
    for source in (tmp_path / "drive", release, corpus / "train.tsv"):
        splits = load_common_voice(source)
        assert splits["train"]["sentence"] == expected["train"]["sentence"]
        assert len(splits["test"]) == len(expected["test"])


def test_two_locales_under_one_folder_is_an_error_naming_both(tmp_path, corpus):
    for locale in ("si", "dv"):
        (tmp_path / locale).symlink_to(corpus, target_is_directory=True)
    message = clear_error(tmp_path)
    assert "2 Common Voice folders" in message and str(tmp_path / "si") in message and str(tmp_path / "dv") in message


def test_missing_test_split_holds_out_a_tenth_of_train(tmp_path, corpus):
    folder = small_cv_folder(tmp_path / "si", corpus, splits=("train", "dev"), rows=10)
    splits = load_common_voice(folder, validation_size=4)
    assert len(splits["train"]) == 10 + 6 - 1 and len(splits["test"]) == 1 and len(splits["validation"]) == 4
    assert_disjoint(splits)


def test_missing_dev_split_holds_validation_out_of_train(tmp_path, corpus):
    folder = small_cv_folder(tmp_path / "si", corpus, splits=("train", "test"), rows=20)
    splits = load_common_voice(folder)
    assert len(splits["train"]) + len(splits["validation"]) == 20 and len(splits["validation"]) == 2  # a tenth
    assert len(splits["test"]) == 20
    assert_disjoint(splits)


def test_tsv_quirks_are_parsed_as_meant(tmp_path):
    """Common Voice writes quotes inside sentences as they are, never escaped, and never quotes a field: read with
    the csv module and QUOTE_NONE, as its own loader did, every quote stays in its sentence."""
    path = tmp_path / "train.tsv"
    lines = [
        CV_HEADER.replace("segment", "segment\tsentence_domain"),                   # an extra column
        "id1\ta.mp3\tPlain sentence.\t2\t0\t\t\t\t\tsi\t\thealth",
        'id2\tb.mp3\t"Stop!" she said, "now".\t2\t0',                               # quotes in a sentence, short row
        'id3\tc.mp3\t"A whole sentence in quotes."\t2\t0\t\t\t\t\tsi\t\t',        # not a quoted field
        'id4\td.mp3\tA 5" pipe and ""doubled"" marks\t1\t0\t\t\t\t\tsi\t\t',        # an odd count, doubled ones
        "",                                                                         # a blank line
        "id5\te.mp3\t   \t1\t0\t\t\t\t\tsi\t\t\tsurplus\tcells",                      # blank sentence, ragged
    ]
    # UTF-8 byte-order mark and Windows line ends, as a spreadsheet program writes them.
    path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8") + b"\r\n")
    rows = read_cv_tsv(path)
    assert [r["path"] for r in rows] == ["a.mp3", "b.mp3", "c.mp3", "d.mp3", "e.mp3"]
    assert [r["sentence"] for r in rows] == [
        "Plain sentence.", '"Stop!" she said, "now".', '"A whole sentence in quotes."',
        'A 5" pipe and ""doubled"" marks', ""]
    assert rows[0]["client_id"] == "id1" and rows[0]["sentence_domain"] == "health"
    assert rows[1]["locale"] == "" and rows[1]["up_votes"] == "2"
    # What Common Voice's own loader reads from the same file (csv.DictReader, tab, QUOTE_NONE): the same text.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        theirs = [row for row in csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE) if row["path"]]
    assert [row["sentence"].strip() for row in theirs] == [r["sentence"] for r in rows]
    # The same table saved as UTF-16 "Unicode text" reads the same.
    utf16 = tmp_path / "utf16.tsv"
    utf16.write_bytes("\r\n".join(lines).encode("utf-16"))
    assert read_cv_tsv(utf16) == rows


def test_only_path_and_sentence_columns_are_enough(tmp_path, corpus):
    folder = small_cv_folder(tmp_path / "si", corpus, rows=4)
    for split in ("train", "dev", "test"):
        rows = tsv_rows(folder / f"{split}.tsv")
        (folder / f"{split}.tsv").write_text("sentence\tpath\n" + "".join(f"{r[2]}\t{r[1]}\n" for r in rows))
    splits = load_common_voice(folder)
    assert len(splits["train"]) == 4 and len(splits["validation"]) == 4 and len(splits["test"]) == 4
    assert Path(splits["train"][0]["audio"]["path"]).is_file()


def test_audiofolder_with_metadata_csv(tmp_path, corpus):
    clips = sorted((corpus / "clips").glob("*.mp3"))[:10]
    for split, part in (("train", clips[:7]), ("test", clips[7:])):
        (tmp_path / split).mkdir()
        lines = ["file_name,transcription"]
        for i, clip in enumerate(part):
            shutil.copy(clip, tmp_path / split / clip.name)
            lines.append(f'{clip.name},"sentence {i}, with a comma"')
        (tmp_path / split / "metadata.csv").write_text("\n".join(lines) + "\n")
    (tmp_path / "train" / "metadata.csv").open("a").write("missing.mp3,kept here and counted when preprocessed\n")
    splits = load_common_voice(tmp_path)
    assert len(splits["train"]) == 7 and len(splits["validation"]) == 1 and len(splits["test"]) == 3
    assert_disjoint(splits)
    rows = {audio["path"]: sentence for split in ("train", "validation") for audio, sentence in
            zip(splits[split]["audio"], splits[split]["sentence"])}
    assert rows[str(tmp_path / "train" / clips[0].name)] == "sentence 0, with a comma"
    assert str(tmp_path / "train" / "missing.mp3") in rows


def test_flat_audiofolder_holds_out_test(tmp_path, corpus):
    clips = sorted((corpus / "clips").glob("*.mp3"))[:20]
    for clip in clips:
        shutil.copy(clip, tmp_path / clip.name)
    (tmp_path / "metadata.jsonl").write_text(
        "".join(f'{{"file_name": "{c.name}", "text": "clip {i}"}}\n' for i, c in enumerate(clips)))
    splits = load_common_voice(tmp_path)
    assert len(splits["train"]) == 17 and len(splits["validation"]) == 1 and len(splits["test"]) == 2  # tenths
    assert splits["train"].column_names == ["audio", "sentence"]
    assert_disjoint(splits)


def test_sources_that_cannot_work_say_so_in_one_sentence(tmp_path, corpus):
    assert "was not found" in clear_error(tmp_path / "no-such-folder")
    (tmp_path / "empty").mkdir()
    assert "neither a Common Voice locale folder" in clear_error(tmp_path / "empty")

    no_train = small_cv_folder(tmp_path / "no-train", corpus, splits=("dev", "test"))
    message = clear_error(no_train)
    assert "no train.tsv" in message and "dev.tsv, test.tsv" in message

    header_only = small_cv_folder(tmp_path / "header-only", corpus)
    (header_only / "train.tsv").write_text(CV_HEADER + "\n")
    (header_only / "dev.tsv").unlink()
    assert "lists no clips" in clear_error(header_only)

    no_sentence = small_cv_folder(tmp_path / "no-sentence", corpus)
    (no_sentence / "train.tsv").write_text("client_id\tpath\ttext_of_clip\nx\ty.mp3\tz\n")
    assert "no sentence column" in clear_error(no_sentence)

    latin1 = small_cv_folder(tmp_path / "latin1", corpus)
    (latin1 / "train.tsv").write_bytes(b"client_id\tpath\tsentence\nx\ty.mp3\tcaf\xe9\n")
    assert "not UTF-8 text (undecodable byte on line 2)" in clear_error(latin1)

    bad_meta = tmp_path / "bad-audiofolder"
    bad_meta.mkdir()
    (bad_meta / "metadata.csv").write_text("name,words\na.mp3,hello\n")
    assert "expected 'file_name' and a transcript column" in clear_error(bad_meta)

    only_test = tmp_path / "only-test-audiofolder" / "test"
    only_test.mkdir(parents=True)
    (only_test / "metadata.csv").write_text("file_name,text\na.mp3,hello\n")
    assert "without a train split" in clear_error(only_test.parent)


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    message = clear_error("someone/common-voice-mirror")
    assert "not a local folder" in message and "someone/common-voice-mirror" in message
