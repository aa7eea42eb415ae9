import os
import stat
import zipfile

import pytest

from helpers import ROOT, song_bytes, write_zip
from lofi_pipeline.core.errors import StageError
from lofi_pipeline.core.runner import Runner
from lofi_pipeline.music.archive import Limits, read_archive, unsafe_name_reason
from lofi_pipeline.pipeline import build_stages


def reasons(result):
    return {name: reason for name, reason in result.skipped}


def test_keeps_midi_in_nested_folders_and_counts_duplicates_once(tmp_path):
    z = write_zip(tmp_path / "a.zip", {"a/b/one.mid": song_bytes(0), "two.MIDI": song_bytes(1),
                                       "copy.mid": song_bytes(0), "notes.txt": b"hello"})
    result = read_archive(z)
    assert sorted(b.name for b in result.files) == ["a/b/one.mid", "two.MIDI"]
    assert result.duplicates == [("copy.mid", "a/b/one.mid")]
    assert reasons(result)["notes.txt"].startswith("not MIDI")


@pytest.mark.parametrize("name", ["../evil.mid", "a/../../evil.mid", "/abs/evil.mid", "C:/evil.mid",
                                  "..\\evil.mid"])
def test_path_escaping_entries_are_refused(tmp_path, name):
    z = write_zip(tmp_path / "a.zip", {name: song_bytes(0), "ok.mid": song_bytes(1)})
    result = read_archive(z)
    assert [b.name for b in result.files] == ["ok.mid"]
    assert reasons(result)[name].startswith("unsafe path")


def test_unsafe_name_reason_accepts_ordinary_names():
    assert unsafe_name_reason("jazz/ballads/blue in green.mid") is None
    assert unsafe_name_reason("..hidden/x.mid") is None


def test_empty_and_garbage_midi_files_are_skipped_with_reasons(tmp_path):
    z = write_zip(tmp_path / "a.zip", {"empty.mid": b"", "garbage.mid": b"this is a text file\n" * 20,
                                       "ok.mid": song_bytes(2)})
    r = reasons(read_archive(z))
    assert r["empty.mid"].startswith("empty file")
    assert r["garbage.mid"].startswith("not a MIDI file")


def test_archive_without_midi_is_an_error_naming_it(tmp_path):
    z = write_zip(tmp_path / "nomidi.zip", {"readme.txt": b"x", "cover.jpg": b"\xff\xd8"})
    with pytest.raises(StageError, match=r"nomidi\.zip: no usable MIDI files \(2 not MIDI\)"):
        read_archive(z)


def test_empty_archive_is_an_error(tmp_path):
    z = write_zip(tmp_path / "empty.zip", {})
    with pytest.raises(StageError, match="no usable MIDI files"):
        read_archive(z)


def test_non_zip_and_truncated_zip_are_errors(tmp_path):
    bad = tmp_path / "songs.zip"
    bad.write_bytes(b"not a zip at all")
    with pytest.raises(StageError, match="not a zip archive"):
        read_archive(bad)
    good = write_zip(tmp_path / "good.zip", {f"s{i}.mid": song_bytes(i) for i in range(3)})
    cut = tmp_path / "cut.zip"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(StageError, match="cut.zip"):
        read_archive(cut)


BOMB = b"MThd" + b"\0" * (3 << 20)  # 3 MiB that deflate to about 3 KiB


def set_uncompressed_size(data: bytearray, name: bytes, size: int) -> bytearray:
    """Rewrite an entry's uncompressed size in its local and central headers (a lying header)."""
    for sig, offset in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        at = 0
        while (at := data.find(sig, at)) >= 0:
            name_at = at + (30 if sig == b"PK\x03\x04" else 46)
            if data[name_at:name_at + len(name)] == name:
                data[at + offset:at + offset + 4] = size.to_bytes(4, "little")
            at += 4
    return data


def test_a_header_that_lies_about_the_size_inflates_nothing_past_it(tmp_path):
    z = write_zip(tmp_path / "bomb.zip", {"bomb.mid": BOMB, "ok.mid": song_bytes(0)})
    z.write_bytes(bytes(set_uncompressed_size(bytearray(z.read_bytes()), b"bomb.mid", 1000)))
    with zipfile.ZipFile(z) as zf:
        assert zf.getinfo("bomb.mid").file_size == 1000  # the lie is in place
    result = read_archive(z, Limits(max_entry_bytes=1 << 20))
    assert reasons(result)["bomb.mid"].startswith("corrupt entry")  # its CRC gives it away
    assert [b.name for b in result.files] == ["ok.mid"]
    assert result.inflated_bytes < len(song_bytes(0)) + (64 << 10)


def test_entries_past_the_size_or_the_compression_ratio_are_refused_while_inflating(tmp_path):
    z = write_zip(tmp_path / "bomb.zip", {"bomb.mid": BOMB, "ok.mid": song_bytes(0)})
    by_ratio = read_archive(z, Limits(max_entry_bytes=32 << 20, max_ratio=100))
    assert reasons(by_ratio)["bomb.mid"].startswith("compression ratio: inflates over 100x")
    assert by_ratio.inflated_bytes < 100 * 4096 + (64 << 10) + len(song_bytes(0))
    by_size = read_archive(z, Limits(max_entry_bytes=1 << 20, max_ratio=1e5))
    assert reasons(by_size)["bomb.mid"].startswith("too large")
    assert [b.name for b in by_size.files] == ["ok.mid"]


def test_refused_entries_count_toward_the_total(tmp_path):
    z = write_zip(tmp_path / "bombs.zip", {f"bomb{i}.mid": BOMB + bytes([i]) for i in range(3)})
    limits = Limits(max_entry_bytes=1 << 20, max_total_bytes=int(2.5 * (1 << 20)), max_ratio=1e5)
    with pytest.raises(StageError, match=r"bombs\.zip: entries inflate past 2\.5 MiB in total"):
        read_archive(z, limits)


def test_a_cap_on_bytes_read_refuses_the_archive(tmp_path):
    z = write_zip(tmp_path / "many.zip", {f"s{i}.mid": song_bytes(i) for i in range(6)})
    refused = r"many\.zip: reading past .* MiB of the archive \(intake\.max_read_mib\)"
    with pytest.raises(StageError, match=refused) as err:
        read_archive(z, Limits(max_read_bytes=600))
    assert "\n" not in str(err.value)


def test_symlink_entries_are_refused(tmp_path):
    z = tmp_path / "link.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("link.mid")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(info, "/etc/passwd")
        zf.writestr("ok.mid", song_bytes(0))
    assert reasons(read_archive(z))["link.mid"].startswith("symlink entry")


def test_encrypted_entries_are_skipped(tmp_path):
    z = write_zip(tmp_path / "enc.zip", {"secret.mid": song_bytes(0), "ok.mid": song_bytes(1)})
    data = bytearray(z.read_bytes())
    # Set the "encrypted" flag bit in the local and central headers of the first entry.
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):
        at = data.find(sig)
        flag_at = at + (6 if sig == b"PK\x03\x04" else 8)
        data[flag_at] |= 0x1
    z.write_bytes(bytes(data))
    result = read_archive(z)
    assert reasons(result)["secret.mid"].startswith("encrypted entry")
    assert [b.name for b in result.files] == ["ok.mid"]


def test_non_utf8_names_and_thousands_of_entries(tmp_path):
    z = tmp_path / "odd.zip"
    with zipfile.ZipFile(z, "w") as zf:
        info = zipfile.ZipInfo("caf\xe9.mid")  # cp437 name, not flagged as UTF-8
        zf.writestr(info, song_bytes(3))
        for i in range(3000):
            zf.writestr(f"tiny/{i}.txt", b"")
    result = read_archive(z)
    assert len(result.files) == 1
    assert len(result.skipped) == 3000
    with pytest.raises(StageError, match="max_entries"):
        read_archive(z, Limits(max_entries=100))


def test_folder_input_skips_symlinks(tmp_path):
    folder = tmp_path / "midis"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.mid").write_bytes(song_bytes(0))
    os.symlink("/etc/passwd", folder / "evil.mid")
    result = read_archive(folder)
    assert [b.name for b in result.files] == ["sub/a.mid"]
    assert reasons(result)["evil.mid"].startswith("symlink entry")


def test_intake_stage_writes_only_inside_its_artifact(tmp_path, quick_cfg):
    z = write_zip(tmp_path / "a.zip", {"../../../escape.mid": song_bytes(0), "/tmp/abs.mid": song_bytes(1),
                                       "fine.mid": song_bytes(2)})
    cfg = quick_cfg(f'run.archive="{z}"')
    before = set(os.listdir(tmp_path))
    Runner(cfg, build_stages(), root=ROOT, log=lambda m: None).run(["intake"])
    assert set(os.listdir(tmp_path)) - before == {"outputs"}
    kept = list((tmp_path / "outputs" / "intake" / "midi").iterdir())
    assert len(kept) == 1
    man = (tmp_path / "outputs" / "intake" / "manifest.json").read_text()
    assert '"unsafe path"' in man
    assert not os.path.exists("/tmp/abs.mid") or os.path.getmtime("/tmp/abs.mid") < os.path.getmtime(z)


def test_duplicate_entry_names_keep_both_contents(tmp_path):
    import warnings
    z = tmp_path / "dups.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(z, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the repeated name, which is the point
        zf.writestr("song.mid", song_bytes(0))
        zf.writestr("song.mid", song_bytes(1))
        zf.writestr("song.mid", song_bytes(0))
    result = read_archive(z)
    assert [b.name for b in result.files] == ["song.mid", "song.mid"]
    assert len({b.sha for b in result.files}) == 2 and len(result.duplicates) == 1
