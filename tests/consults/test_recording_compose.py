"""Composing a recording: the broker's raw files (written by the real Recorder from encoded
VP8/Opus packets) → one MP4 with H.264 and AAC, stored, shown to the session's participants
and refused to strangers, every read audited."""

from __future__ import annotations

import asyncio
import datetime as dt
import fractions
import functools
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import AuditEvent, User
from consults.media.compose import grid
from consults.media.forwarding import Publication
from consults.media.recorder import Recorder
from consults.models import Appointment, Recording, SessionPresence
from consults.recording_tasks import compose_recording
from consults.services.links import issue_join_link
from consults.services.recording import finish_abandoned_recordings, recording_directory
from tests.conftest import logged_in_client
from tests.consults.sessions import joined_by_link, link_patient

pytestmark = pytest.mark.django_db

SECONDS = 3.0


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@functools.cache  # the same packets for every test: encoded once
def vp8_packets(count: int, shade: int) -> list[av.Packet]:
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height, codec.pix_fmt = 320, 240, "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    packets = []
    for index in range(count):
        image = np.full((240, 320, 3), shade, dtype=np.uint8)
        image[:, (index * 8) % 300 :][:, :20] = 255
        frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        packets += list(codec.encode(frame))
    packets += list(codec.encode())
    return packets


@functools.cache
def opus_packets(count: int, pitch: float) -> list[av.Packet]:
    codec = av.CodecContext.create("libopus", "w")
    codec.sample_rate, codec.layout, codec.format = 48000, "stereo", "s16"
    packets: list[av.Packet] = []
    for index in range(count):
        t = (np.arange(960) + index * 960) / 48000
        tone = (np.sin(2 * np.pi * pitch * t) * 8000).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(np.repeat(tone, 2).reshape(1, -1), format="s16",
                                           layout="stereo")  # fmt: skip
        frame.sample_rate, frame.pts = 48000, index * 960
        packets += list(codec.encode(frame))
    return packets


async def record(directory: Path) -> dict[str, Any]:
    """Two participants: the specialist for the whole 3 s, the patient from 1 s to 2.5 s
    (joined late, left early). Packets go through real Publications, as the broker's."""
    clock = FakeClock()
    recorder = Recorder(9, directory, clock=clock)
    people = {
        "specialist": (vp8_packets(90, 60), opus_packets(150, 440.0), 0.0, SECONDS),
        "patient": (vp8_packets(45, 160), opus_packets(75, 660.0), 1.0, 2.5),
    }
    publications: dict[str, tuple[Publication, Publication]] = {}
    rtp_base = {"specialist": 4_294_900_000, "patient": 1234}  # one wraps around 2^32
    for tick in range(int(SECONDS * 50) + 1):  # every 20 ms
        t = tick / 50
        clock.now = 100.0 + t
        for key, (video, audio, start, end) in people.items():
            if not start <= t < end:
                continue
            if key not in publications:
                publications[key] = (Publication("video"), Publication("audio"))
                for publication in publications[key]:
                    recorder.add(key, publication)
            step = round((t - start) * 50)
            if step < len(audio):
                packet = av.Packet(bytes(audio[step]))
                packet.pts = (rtp_base[key] + step * 960) % 2**32
                packet.time_base, packet.is_keyframe = fractions.Fraction(1, 48000), True
                publications[key][1].push(packet)
            frame = round((t - start) * 30)
            if tick % 5 in (0, 2, 4) and frame < len(video):  # ~30 fps on a 50 Hz tick
                packet = av.Packet(bytes(video[frame]))
                packet.pts = (rtp_base[key] * 2 + frame * 3000) % 2**32
                packet.time_base = fractions.Fraction(1, 90000)
                packet.is_keyframe = bool(not bytes(video[frame])[0] & 1)
                publications[key][0].push(packet)
        await asyncio.sleep(0)
    return await recorder.stop()


@pytest.fixture
def recorded(session: Appointment, specialist: User, settings: Any, tmp_path: Path) -> Recording:
    settings.RECORDING_DIR = tmp_path / "recordings"
    settings.MEDIA_ROOT = tmp_path / "media"
    recording = Recording.objects.create(
        appointment=session, started_by=specialist, started_by_name=str(specialist)
    )
    for key, name in (("specialist", "Dr Specialist"), ("patient", "Asel Mamytova")):
        SessionPresence.objects.create(
            appointment=session, participant_key=key, name=name, role="patient", state="left"
        )
    asyncio.run(record(recording_directory(recording.pk)))
    return recording


def test_grid_of_tiles() -> None:
    assert [grid(n) for n in (1, 2, 3, 4, 5)] == [(1, 1), (2, 1), (2, 2), (2, 2), (3, 2)]


def test_the_task_composes_one_mp4_with_h264_and_aac(recorded: Recording) -> None:
    compose_recording.delay(recorded.pk)

    recorded.refresh_from_db()
    assert recorded.status == Recording.Status.READY, recorded.error
    assert recorded.stopped_at is not None
    assert abs(recorded.duration - SECONDS) < 0.3
    assert recorded.size == recorded.file.size > 10_000
    with recorded.file.open("rb") as handle, av.open(handle) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        assert video.codec_context.name == "h264"
        assert (video.codec_context.width, video.codec_context.height) == (1280, 360)
        assert video.codec_context.pix_fmt == "yuv420p"
        assert audio.codec_context.name == "aac"
        assert audio.codec_context.sample_rate == 48000
        assert abs(float(container.duration / 1_000_000) - SECONDS) < 0.3
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
        container.seek(0)
        sound = np.concatenate(
            [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
        )  # mono float
    # The patient's tile (right) shows their video between 1 s and 2.5 s, their name
    # on a dark tile before and after; the specialist's tile (left) is live throughout.
    at = {second: frames[int(second * 15)] for second in (0.5, 1.7, 2.9)}
    right = {s: float(f[:, 640:].mean()) for s, f in at.items()}
    assert right[1.7] > right[0.5] + 60  # shade 160 video vs a dark tile
    assert right[2.9] < right[1.7] - 60
    assert all(f[:, :640].mean() > 45 for f in at.values())  # shade 60 video, not black

    # One mixed track: the specialist's 440 Hz throughout, the patient's 660 Hz only while
    # they were there (1 s to 2.5 s), in place.
    def strength(pitch: float, start: float, end: float) -> float:
        window = sound[int(start * 48000) : int(end * 48000)]
        spectrum = np.abs(np.fft.rfft(window))
        return float(spectrum[int(pitch * (end - start))] / len(window))

    assert strength(440, 0.2, 0.8) > 0.05
    assert strength(440, 1.2, 2.2) > 0.05
    assert strength(660, 1.2, 2.2) > 0.05
    assert strength(660, 0.2, 0.8) < 0.01
    assert strength(660, 2.7, 2.95) < 0.01
    # The raw files are gone after success.
    assert not recording_directory(recorded.pk).exists()


def test_composing_twice_changes_nothing(recorded: Recording) -> None:
    compose_recording.delay(recorded.pk)
    name = Recording.objects.get(pk=recorded.pk).file.name
    compose_recording.delay(recorded.pk)
    assert Recording.objects.get(pk=recorded.pk).file.name == name


def test_raw_files_without_a_manifest_fail_with_a_clear_error(
    session: Appointment, settings: Any, tmp_path: Path
) -> None:
    settings.RECORDING_DIR = tmp_path
    recording = Recording.objects.create(appointment=session, started_by_name="Dr")
    recording_directory(recording.pk).mkdir()

    compose_recording.delay(recording.pk)

    recording.refresh_from_db()
    assert recording.status == Recording.Status.FAILED
    assert "no manifest" in recording.error


def test_participants_watch_and_download_it_strangers_do_not_and_reads_are_audited(
    recorded: Recording, clinician: User, other_clinician: User
) -> None:
    compose_recording.delay(recorded.pk)
    url = f"/consults/recordings/{recorded.pk}/"

    watcher = logged_in_client(clinician)
    page = watcher.get(f"/consults/sessions/{recorded.appointment_id}/recordings/")
    assert page.status_code == 200
    assert url.encode() in page.content
    assert b"<video controls" in page.content
    played = watcher.get(url)
    assert played.status_code == 200
    assert played["Content-Type"] == "video/mp4"
    assert b"".join(played.streaming_content)[4:8] == b"ftyp"
    downloaded = watcher.get(url + "?download=1")
    assert "attachment" in downloaded["Content-Disposition"]

    stranger: Client = logged_in_client(other_clinician)
    assert stranger.get(url).status_code == 404
    assert (
        stranger.get(f"/consults/sessions/{recorded.appointment_id}/recordings/").status_code == 404
    )

    reads = AuditEvent.objects.filter(object_type="consults.recording").order_by("id")
    assert [(e.actor_user_id, e.action, e.detail) for e in reads] == [
        (clinician.pk, "view", {"recording": "view"}),
        (clinician.pk, "export", {"recording": "download"}),
    ]
    assert {e.patient_id for e in reads} == {recorded.appointment.referral.patient_id}
    refused = AuditEvent.objects.get(detail__requested_recording_id=recorded.pk)
    assert (refused.actor_user_id, refused.outcome) == (other_clinician.pk, "denied")


def test_a_patient_who_joined_by_link_watches_it_while_the_link_holds(
    recorded: Recording,
) -> None:
    compose_recording.delay(recorded.pk)
    url = f"/consults/recordings/{recorded.pk}/"
    assert Client().get(url).status_code == 302  # nobody: to the log-in page

    patient = joined_by_link(recorded.appointment)
    page = patient.get(f"/consults/sessions/{recorded.appointment_id}/recordings/")
    assert page.status_code == 200
    assert url.encode() in page.content
    played = patient.get(url)
    assert played.status_code == 200
    assert b"".join(played.streaming_content)[4:8] == b"ftyp"
    read = AuditEvent.objects.get(object_type="consults.recording", action="view")
    assert (read.actor_user_id, read.actor_label) == (None, "Asel Mamytova")

    # The link is replaced (or expires): the recording is closed to that browser too.
    issue_join_link(participant=link_patient(recorded.appointment))
    assert patient.get(url).status_code == 302


def test_the_referral_panel_shows_the_recording_to_those_who_see_the_consult(
    recorded: Recording, clinician: User, other_clinician: User, rf: Any
) -> None:
    from django.template import Context, Template

    compose_recording.delay(recorded.pk)
    template = Template("{% load recordings %}{% recordings_panel referral %}")

    def panel(user: User) -> str:
        request = rf.get("/")
        request.user = user
        return template.render(
            Context({"referral": recorded.appointment.referral, "request": request})
        )

    assert f"/consults/recordings/{recorded.pk}/" in panel(clinician)
    assert "<video controls" in panel(clinician)
    assert "recordings" not in panel(other_clinician)


def test_the_call_page_has_the_recording_controls(session: Appointment, specialist: User) -> None:
    page = logged_in_client(specialist).get(f"/consults/sessions/{session.pk}/")
    assert b'id="recording-consent"' in page.content
    assert b'id="btn-record"' in page.content
    config = page.context["config"]
    assert config["strings"]["startRecording"] == "Start recording"
    assert "{name}" in config["strings"]["recordingOn"]


def test_a_recording_its_broker_never_stopped_is_finished_once_the_call_is_empty(
    recorded: Recording,
) -> None:
    # The broker wrote the files and died before closing them: no manifest, status
    # "recording". While someone is in the call, nothing happens.
    (recording_directory(recorded.pk) / "manifest.json").unlink()
    presence = SessionPresence.objects.filter(appointment=recorded.appointment).first()
    SessionPresence.objects.filter(pk=presence.pk).update(state="admitted")
    later = timezone.now() + dt.timedelta(minutes=30)
    assert finish_abandoned_recordings(now=later) == []
    assert Recording.objects.get(pk=recorded.pk).status == Recording.Status.RECORDING

    # The call empties; ten minutes on, the sweep finishes it, saying why it failed.
    SessionPresence.objects.filter(pk=presence.pk).update(state="left")
    assert finish_abandoned_recordings(now=timezone.now() + dt.timedelta(minutes=5)) == []
    assert finish_abandoned_recordings(now=later) == [recorded.pk]
    recorded.refresh_from_db()
    assert recorded.status == Recording.Status.FAILED
    assert recorded.error


def test_a_composition_lost_for_hours_is_done_again(recorded: Recording) -> None:
    Recording.objects.filter(pk=recorded.pk).update(
        status=Recording.Status.PROCESSING, stopped_at=timezone.now()
    )
    assert finish_abandoned_recordings(now=timezone.now() + dt.timedelta(hours=1)) == []
    assert finish_abandoned_recordings(now=timezone.now() + dt.timedelta(hours=4)) == [recorded.pk]
    recorded.refresh_from_db()
    assert recorded.status == Recording.Status.READY, recorded.error
