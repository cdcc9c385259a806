"""The melody encoding: hand-built streams, exact token round trips, what cannot be encoded, MIDI, piano rolls."""

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from music21 import chord, converter, duration, note, stream, tie
from PIL import Image

from hf_vq.music import (
    MAX_PITCH,
    MIN_PITCH,
    NO_EVENT,
    NOTE_OFF,
    VOCAB_SIZE,
    MelodyError,
    encoding,
    mean_pitch,
    melody_to_tokens,
    note_density,
    note_spans,
    piano_roll,
    pitch_to_token,
    tokens_to_melody,
    tokens_to_midi,
)

C4, D4, E4, G4 = (pitch_to_token(p) for p in (60, 62, 64, 67))


def melody(*events: tuple[float, str | None, float]) -> stream.Stream:
    """A stream of (offset in quarters, pitch name or None for a rest, length in quarters)."""
    s = stream.Stream()
    for offset, pitch, length in events:
        s.insert(offset, note.Rest(quarterLength=length) if pitch is None else note.Note(pitch, quarterLength=length))
    return s


def events(s: stream.Stream) -> list[tuple[float, int | None, float]]:
    """(onset, MIDI pitch or None, length) of the notes and rests of a stream, in order."""
    return [
        (float(e.offset), None if e.isRest else e.pitch.midi, float(e.quarterLength))
        for e in s.flatten().notesAndRests
    ]


def test_constants():
    assert (NO_EVENT, NOTE_OFF, MIN_PITCH, MAX_PITCH, VOCAB_SIZE) == (0, 1, 21, 108, 90)
    assert pitch_to_token(21) == 2 and pitch_to_token(108) == 89


def test_a_hand_built_stream_gives_the_expected_tokens():
    # a leading rest, two notes in a row, a rest, a dotted note, a trailing rest
    s = melody(
        (0, None, 0.5), (0.5, "C4", 0.5), (1, "D4", 0.25), (1.25, None, 0.75), (2, "E4", 0.75), (2.75, None, 0.25)
    )
    expected = [NO_EVENT, NO_EVENT, C4, NO_EVENT, D4, NOTE_OFF, NO_EVENT, NO_EVENT, E4, NO_EVENT, NO_EVENT, NOTE_OFF]
    assert melody_to_tokens(s) == expected


def test_stream_round_trip_keeps_pitches_onsets_and_rests():
    s = melody((0, "G4", 1), (1, "E4", 0.5), (1.5, None, 0.5), (2, "C4", 1.5), (3.5, "D4", 0.25), (3.75, None, 1))
    back = tokens_to_melody(melody_to_tokens(s))
    assert events(back) == events(s)


def test_token_round_trip_is_exact_for_valid_sequences():
    rng = np.random.default_rng(0)
    for _ in range(50):
        tokens, sounding = [], False
        for _ in range(int(rng.integers(1, 64))):
            kind = rng.random()
            if kind < 0.5:
                tokens.append(NO_EVENT)
            elif kind < 0.65 and sounding:
                tokens.append(NOTE_OFF)
                sounding = False
            else:
                tokens.append(int(rng.integers(2, VOCAB_SIZE)))
                sounding = True
        assert melody_to_tokens(tokens_to_melody(tokens)) == tokens


def test_trailing_silence_is_a_final_rest_and_a_lone_note_off_is_silence():
    assert events(tokens_to_melody([C4, NO_EVENT, NOTE_OFF, NO_EVENT])) == [(0.0, 60, 0.5), (0.5, None, 0.5)]
    # NOTE_OFF while nothing sounds (a model sample may hold it): read as silence
    assert melody_to_tokens(tokens_to_melody([NOTE_OFF, C4])) == [NO_EVENT, C4]
    assert note_spans([NO_EVENT, C4, NO_EVENT, D4, NOTE_OFF]) == [(1, 3, 60), (3, 4, 62)]


def test_ties_grace_notes_and_chords():
    s = stream.Stream()
    first, held = note.Note("C4", quarterLength=0.5), note.Note("C4", quarterLength=0.25)
    first.tie, held.tie = tie.Tie("start"), tie.Tie("stop")
    slurred, other = note.Note("D4", quarterLength=0.25), note.Note("E4", quarterLength=0.25)
    slurred.tie, other.tie = tie.Tie("start"), tie.Tie("stop")  # O'Neill's ABC ties different pitches: 2 notes
    grace = note.Note("G4")
    grace.duration = duration.GraceDuration()
    s.insert(0, first)
    s.insert(0.5, held)
    s.insert(0.75, slurred)
    s.insert(1.0, grace)
    s.insert(1.0, other)
    s.insert(1.25, chord.Chord(["C4", "E4", "G4"], quarterLength=0.25))  # the highest pitch
    assert melody_to_tokens(s) == [C4, NO_EVENT, NO_EVENT, D4, E4, G4]


@pytest.mark.parametrize(
    ("events_", "reason"),
    [
        (((0, "C4", 1 / 3), (1 / 3, "D4", 1 / 3), (2 / 3, "E4", 1 / 3)), "tuplet"),
        (((0, "C4", 0.125), (0.125, "D4", 0.375)), "off_grid"),
        (((0, "C1", 1), (1, "A0", 1), (2, "C8", 1), (3, "D8", 1)), "pitch_range"),
        (((0, "C4", 1), (0.5, "D4", 1)), "overlap"),
    ],
)
def test_what_cannot_be_encoded_raises_a_one_line_melody_error(events_, reason):
    s = melody(*events_)
    if reason == "tuplet":
        for n in s.notes:
            n.duration.appendTuplet(duration.Tuplet(3, 2))
            n.duration.quarterLength = 1 / 3
    with pytest.raises(MelodyError) as caught:
        melody_to_tokens(s)
    assert caught.value.reason == reason
    assert "\n" not in str(caught.value) and "quarter" in str(caught.value)


def test_a_pickup_bar_is_padded_to_a_whole_bar():
    tune = converter.parse("X:1\nT:pickup\nM:4/4\nL:1/8\nK:C\nG2 | c2d2 e2f2 | g8 |]\n", format="abc")
    tokens = melody_to_tokens(tune)
    assert tokens[:13] == [NO_EVENT] * 12 + [G4]  # the quarter-note pickup ends the first 16-step bar
    assert tokens[16] == pitch_to_token(72) and len(tokens) == 48
    assert melody_to_tokens(tune, pad_pickup=False)[0] == G4


def test_midi_file_round_trip(tmp_path):
    tokens = [NO_EVENT, NO_EVENT, C4, NO_EVENT, D4, NOTE_OFF, E4, NO_EVENT, NO_EVENT, G4, NO_EVENT, NOTE_OFF]
    path = tokens_to_midi(tokens, tmp_path / "melody.mid", tempo_qpm=90)
    assert path == str(tmp_path / "melody.mid") and os.listdir(tmp_path) == ["melody.mid"]  # no temporary left
    back = melody_to_tokens(converter.parse(path), pad_pickup=False)
    onsets = [(i, t) for i, t in enumerate(tokens) if t >= 2]
    assert [(i, t) for i, t in enumerate(back) if t >= 2] == onsets
    assert back[:6] == tokens[:6]  # note-off after D4 kept


def test_piano_roll_size_and_content():
    first = [C4, NO_EVENT, NO_EVENT, NO_EVENT, NOTE_OFF] + [NO_EVENT] * 11
    second = [G4] * 20
    image = piano_roll([first, np.asarray(second)], pixels_per_step=2, pixels_per_pitch=3, gap=2)
    rows = (67 + 2) - (60 - 2) + 1  # the notes' range padded by 2
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    assert image.size == (20 * 2, 2 * rows * 3 + 2)
    pixels = np.asarray(image)
    c4_row = ((67 + 2) - 60) * 3
    assert pixels[c4_row, 0].tolist() == list(encoding._ONSET)  # C4 starts at step 0
    assert pixels[c4_row, 3 * 2].tolist() == list(encoding._NOTE)  # sounds at step 3
    assert pixels[c4_row, 6 * 2].tolist() == list(encoding._C_ROW)  # and not after its note-off at step 4
    assert pixels[(69 - 67) * 3 + rows * 3 + 2, 5 * 2].tolist() == list(encoding._ONSET)  # repeated G4s: onsets
    fixed = piano_roll(np.asarray([second, second]), pitch_range=(MIN_PITCH, MAX_PITCH), pixels_per_step=1)
    assert fixed.size == (20, 2 * 88 * 3 + 2)


def test_attributes():
    tokens = [C4, NO_EVENT, E4, NOTE_OFF, G4, NO_EVENT, NO_EVENT, NO_EVENT]
    assert note_density(tokens) == 3 / 8
    assert mean_pitch(tokens) == pytest.approx((60 + 64 + 67) / 3)
    assert math.isnan(mean_pitch([NO_EVENT, NOTE_OFF])) and math.isnan(note_density([]))


def test_tokens_outside_the_vocabulary_are_refused():
    with pytest.raises(MelodyError, match="token 90"):
        tokens_to_melody([C4, 90])


def test_importing_the_package_does_not_import_music21():
    code = "import sys, hf_vq, hf_vq.music, hf_vq.data; assert 'music21' not in sys.modules, 'music21 imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
