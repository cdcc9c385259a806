"""MusicVAE's monophonic melody encoding: one token per sixteenth note.

A melody is a sequence of steps, `STEPS_PER_QUARTER` = 4 per quarter note (16 per 4/4 bar), each holding one token:

- `NO_EVENT` (0): nothing happens; the previous state (a sounding note, or silence) goes on;
- `NOTE_OFF` (1): the sounding note stops; silence until the next note-on;
- `2 + pitch - MIN_PITCH` (2..89): a note of MIDI pitch `pitch` (21..108, the piano's range) starts, ending the
  previous note if one sounds.

Reading a music21 stream (`melody_to_tokens`): the stream is flattened; grace notes (zero duration) are dropped; a
tied continuation of the same pitch is a hold (`NO_EVENT`), not a new note-on (O'Neill's transcriptions also put
ABC ties between different pitches: those are new notes); a chord stands for its highest pitch (the melody line of
a double stop); chord symbols are ignored. Silence before the first note is `NO_EVENT` steps (not stripped: they
keep the bar lines in place), a rest or gap after a note starts with `NOTE_OFF`. What cannot be quantized raises a
`MelodyError` naming the reason: onsets or durations off the sixteenth grid (tuplets, 32nd notes), pitches outside
21..108, notes that overlap (polyphony).

Music21 is imported inside the functions that need it, so that importing this module stays cheap.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any

import numpy as np

from ..utils.errors import UsageError

if TYPE_CHECKING:
    from music21 import stream as m21stream
    from PIL import Image as PILImage

NO_EVENT = 0
NOTE_OFF = 1
MIN_PITCH = 21  # A0
MAX_PITCH = 108  # C8
NUM_SPECIAL_TOKENS = 2
VOCAB_SIZE = NUM_SPECIAL_TOKENS + MAX_PITCH - MIN_PITCH + 1  # 90
STEPS_PER_QUARTER = 4

MELODY_ERROR_REASONS = ("tuplet", "off_grid", "pitch_range", "overlap", "unpitched", "token")


class MelodyError(UsageError):
    """A melody that the encoding cannot represent; `reason` is one of `MELODY_ERROR_REASONS`.

    The message is one line naming the note (pitch and onset in quarters) and what is wrong with it.
    """

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def pitch_to_token(pitch: int) -> int:
    """The note-on token of a MIDI pitch in [MIN_PITCH, MAX_PITCH]."""
    if not MIN_PITCH <= pitch <= MAX_PITCH:
        raise MelodyError("pitch_range", f"MIDI pitch {pitch} is outside [{MIN_PITCH}, {MAX_PITCH}]")
    return pitch - MIN_PITCH + NUM_SPECIAL_TOKENS


def token_to_pitch(token: int) -> int:
    """The MIDI pitch of a note-on token (>= 2)."""
    return int(token) - NUM_SPECIAL_TOKENS + MIN_PITCH


def _as_tokens(tokens: Iterable[int] | np.ndarray) -> np.ndarray:
    """Tokens (a list, an array or a CPU tensor) as a 1-D int64 array, checked to be in [0, VOCAB_SIZE)."""
    if not hasattr(tokens, "__array__"):  # a list or another iterable; arrays and tensors convert themselves
        tokens = list(tokens)
    array = np.asarray(tokens, dtype=np.int64).reshape(-1)
    if len(array) and (array.min() < 0 or array.max() >= VOCAB_SIZE):
        bad = int(array[(array < 0) | (array >= VOCAB_SIZE)][0])
        raise MelodyError("token", f"token {bad} is outside the melody vocabulary [0, {VOCAB_SIZE})")
    return array


def note_spans(tokens: Iterable[int] | np.ndarray) -> list[tuple[int, int, int]]:
    """The notes of a token sequence as `(start_step, end_step, midi_pitch)`, in order.

    A note lasts until the next note-on or `NOTE_OFF`, or to the end of the sequence. A `NOTE_OFF` while nothing
    sounds (as model samples may hold) is silence, like `NO_EVENT`.
    """
    array = _as_tokens(tokens)
    spans = []
    start, pitch = None, None
    for step in np.flatnonzero(array != NO_EVENT):
        if start is not None:
            spans.append((start, int(step), pitch))
            start, pitch = None, None
        if array[step] >= NUM_SPECIAL_TOKENS:
            start, pitch = int(step), token_to_pitch(array[step])
    if start is not None:
        spans.append((start, len(array), pitch))
    return spans


# ------------------------------------------------------------------------------------------------ music21 -> tokens


def _steps(quarters: Any, what: str, element: Any) -> int:
    """A position or length in quarters as a whole number of steps, or a `MelodyError` (tuplet / off the grid)."""
    steps = Fraction(quarters) * STEPS_PER_QUARTER
    if steps.denominator != 1:
        tuplet = bool(getattr(getattr(element, "duration", None), "tuplets", ()))
        reason = "tuplet" if tuplet else "off_grid"
        kind = "a tuplet" if tuplet else "not on the sixteenth grid"
        raise MelodyError(reason, f"{_name(element)}: {what} {float(quarters):g} quarters is {kind}")
    return int(steps)


def _name(element: Any) -> str:
    """`note G4 at quarter 9.5`, for messages."""
    what = getattr(element, "nameWithOctave", None) or type(element).__name__.lower()
    return f"{what} at quarter {float(element.offset):g}"


def _melody_pitch(element: Any) -> int:
    """The MIDI pitch an element contributes to the melody: a note's, or a chord's highest."""
    from music21 import chord

    if isinstance(element, chord.Chord):
        if not element.pitches:
            raise MelodyError("unpitched", f"{_name(element)}: a chord without pitches")
        return max(p.midi for p in element.pitches)
    pitch = getattr(element, "pitch", None)
    if pitch is None:
        raise MelodyError("unpitched", f"{_name(element)}: {type(element).__name__} has no pitch")
    return pitch.midi


def pickup_steps(stream: m21stream.Stream) -> int:
    """The silence before a pickup (anacrusis) bar, in steps: the `paddingLeft` music21 gives an incomplete first
    measure, so that padding the melody with it puts the bar lines on multiples of the bar length. 0 without one."""
    from music21 import stream as m21stream

    first = stream.recurse().getElementsByClass(m21stream.Measure).first()
    if first is None or not first.paddingLeft:
        return 0
    return _steps(first.paddingLeft, "pickup padding", first)


def melody_to_tokens(stream: m21stream.Stream, pad_pickup: bool = True) -> list[int]:
    """The tokens of a monophonic music21 stream (score, part, measure or plain stream of notes and rests).

    The sequence covers the stream from offset 0 to the end of its last note or rest. With `pad_pickup`, a pickup
    bar is preceded by `NO_EVENT` steps filling it to a whole bar (`pickup_steps`). Raises a `MelodyError` (its
    `reason`: tuplet, off_grid, pitch_range, overlap, unpitched) for what the encoding cannot hold; a stream without
    notes gives only `NO_EVENT`s (or nothing).
    """
    from music21 import harmony, note

    padding = pickup_steps(stream) if pad_pickup else 0
    flat = stream.flatten()
    # (onset, end, pitch) of each sounding note, ties merged; rests only extend the length
    notes: list[list[int]] = []
    tied_open = False  # the previous note's tie continues into the next element
    length = 0
    for element in flat.notesAndRests:
        if isinstance(element, harmony.Harmony):  # chord symbols: annotations, not notes
            continue
        if element.duration.isGrace or element.quarterLength == 0:
            continue  # grace notes take no time of their own
        onset = _steps(element.offset, "onset", element)
        end = onset + _steps(element.quarterLength, "duration", element)
        length = max(length, end)
        if isinstance(element, note.Rest):
            tied_open = False
            continue
        pitch = _melody_pitch(element)
        if not MIN_PITCH <= pitch <= MAX_PITCH:
            raise MelodyError(
                "pitch_range", f"{_name(element)}: MIDI pitch {pitch} outside [{MIN_PITCH}, {MAX_PITCH}]"
            )
        tie = getattr(element, "tie", None)
        if notes and onset < notes[-1][1]:
            raise MelodyError("overlap", f"{_name(element)} starts before the previous note ends (polyphony)")
        if tied_open and notes and notes[-1][1] == onset and notes[-1][2] == pitch:
            notes[-1][1] = end  # a tied continuation: the same note, held
        else:
            notes.append([onset, end, pitch])
        tied_open = tie is not None and tie.type in ("start", "continue")

    tokens = [NO_EVENT] * (padding + length)
    for i, (onset, end, pitch) in enumerate(notes):
        tokens[padding + onset] = pitch_to_token(pitch)
        next_onset = notes[i + 1][0] if i + 1 < len(notes) else None
        if end != next_onset and end < length:
            tokens[padding + end] = NOTE_OFF  # silence follows (a rest, a gap)
    return tokens


# ------------------------------------------------------------------------------------------------ tokens -> music21


def tokens_to_melody(tokens: Iterable[int] | np.ndarray) -> m21stream.Stream:
    """A music21 stream of notes and rests (offsets and durations in quarters) playing a token sequence.

    A note lasts until the next event or the end of the sequence; silence (`NOTE_OFF`, or leading `NO_EVENT`s)
    becomes a rest lasting until the next note-on or the end. For a valid sequence (every `NOTE_OFF` ends a sounding
    note) `melody_to_tokens(tokens_to_melody(t)) == t`, trailing silence included: it is a final rest. A `NOTE_OFF`
    during silence is read as silence (the round trip then gives `NO_EVENT` there).
    """
    from music21 import note
    from music21 import stream as m21stream

    array = _as_tokens(tokens)
    melody = m21stream.Stream()
    cursor = 0  # first step not yet covered by a note or rest
    for start, end, pitch in note_spans(array):
        if start > cursor:
            melody.insert(cursor / STEPS_PER_QUARTER, note.Rest(quarterLength=(start - cursor) / STEPS_PER_QUARTER))
        melody.insert(start / STEPS_PER_QUARTER, note.Note(pitch, quarterLength=(end - start) / STEPS_PER_QUARTER))
        cursor = end
    if cursor < len(array):
        melody.insert(cursor / STEPS_PER_QUARTER, note.Rest(quarterLength=(len(array) - cursor) / STEPS_PER_QUARTER))
    return melody


def tokens_to_midi(tokens: Iterable[int] | np.ndarray, path: str | os.PathLike, tempo_qpm: float = 120) -> str:
    """Write a token sequence as a one-track MIDI file at `tempo_qpm` quarter notes per minute; returns the path.

    Written to a temporary file beside `path` (its folder is created), then renamed: a reader never sees half a file.
    """
    from music21 import tempo

    if tempo_qpm <= 0:
        raise UsageError(f"`tempo_qpm` must be > 0, got {tempo_qpm}")
    melody = tokens_to_melody(tokens)
    melody.insert(0, tempo.MetronomeMark(number=tempo_qpm))
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mid", prefix=".tmp-", dir=directory)
    os.close(fd)
    try:
        melody.write("midi", fp=tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


# ---------------------------------------------------------------------------------------------- pictures, attributes

# piano_roll colors (RGB)
_BACKGROUND = (255, 255, 255)
_BAR_LINE = (200, 200, 200)
_C_ROW = (242, 242, 242)  # rows of the C's, to read the octave
_NOTE = (60, 90, 170)
_ONSET = (20, 30, 80)  # the first step of each note, so that repeated notes stay apart
_SEPARATOR = (120, 120, 120)


def piano_roll(
    tokens_list: Sequence[Iterable[int] | np.ndarray] | np.ndarray,
    pitch_range: tuple[int, int] | None = None,
    bar_length: int = 16,
    pixels_per_step: int = 4,
    pixels_per_pitch: int = 3,
    gap: int = 2,
) -> PILImage.Image:
    """A piano-roll picture (RGB) of one or more token sequences, stacked top to bottom.

    Rows are pitches (high at the top), columns steps; bar lines every `bar_length` steps; a note's first step is
    darker. `pitch_range` (inclusive MIDI pitches) defaults to the notes' range (all sequences) padded by 2, or
    60..72 without notes. The image is `pixels_per_step * max_length` wide and
    `n * (hi - lo + 1) * pixels_per_pitch + (n - 1) * gap` high for `n` sequences.
    """
    from PIL import Image as PILImage

    if getattr(tokens_list, "ndim", None) == 1:  # one sequence as an array or tensor
        tokens_list = [tokens_list]
    sequences = [_as_tokens(tokens) for tokens in tokens_list]
    if not sequences:
        raise UsageError("piano_roll needs at least one token sequence")
    if min(pixels_per_step, pixels_per_pitch, bar_length) < 1 or gap < 0:
        raise UsageError("piano_roll: pixels_per_step, pixels_per_pitch and bar_length must be >= 1, gap >= 0")
    spans = [note_spans(sequence) for sequence in sequences]
    if pitch_range is None:
        pitches = [pitch for notes in spans for _, _, pitch in notes]
        lo, hi = (min(pitches) - 2, max(pitches) + 2) if pitches else (60, 72)
    else:
        lo, hi = pitch_range
        if lo > hi:
            raise UsageError(f"piano_roll: pitch_range {pitch_range} is empty")
    rows = hi - lo + 1
    steps = max(1, max(len(sequence) for sequence in sequences))
    panel = np.empty((rows, steps, 3), dtype=np.uint8)  # (pitch rows, steps, RGB), one cell per (pitch, step)
    panels = []
    for notes in spans:
        panel[:] = _BACKGROUND
        for pitch in range(lo, hi + 1):
            if pitch % 12 == 0:
                panel[hi - pitch] = _C_ROW
        panel[:, ::bar_length] = _BAR_LINE
        for start, end, pitch in notes:
            if lo <= pitch <= hi:
                panel[hi - pitch, start:end] = _NOTE
                panel[hi - pitch, start] = _ONSET
        # (rows * pixels_per_pitch, steps * pixels_per_step, 3)
        panels.append(panel.repeat(pixels_per_pitch, axis=0).repeat(pixels_per_step, axis=1))
    separator = np.empty((gap, steps * pixels_per_step, 3), dtype=np.uint8)
    separator[:] = _SEPARATOR
    stacked = [panels[0]]
    for next_panel in panels[1:]:
        stacked += [separator, next_panel]
    return PILImage.fromarray(np.concatenate(stacked, axis=0), mode="RGB")


def note_density(tokens: Iterable[int] | np.ndarray) -> float:
    """Note-ons per step (NaN for an empty sequence): MusicVAE's "note density" attribute."""
    array = _as_tokens(tokens)
    if len(array) == 0:
        return math.nan
    return float(np.count_nonzero(array >= NUM_SPECIAL_TOKENS)) / len(array)


def mean_pitch(tokens: Iterable[int] | np.ndarray) -> float:
    """The average MIDI pitch of the note-ons (each note counted once, whatever its length); NaN without notes."""
    array = _as_tokens(tokens)
    onsets = array[array >= NUM_SPECIAL_TOKENS]
    if len(onsets) == 0:
        return math.nan
    return float(onsets.mean()) - NUM_SPECIAL_TOKENS + MIN_PITCH
