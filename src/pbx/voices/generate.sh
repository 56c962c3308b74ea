#!/usr/bin/env bash
# Regenerates the voices of the emulator's test extensions (built into the binary): the
# answering machine's greeting, which ends in its beep, and the person's "Hello?". 8 kHz mono
# 16-bit, spoken by espeak-ng and shaped by sox like a phone line.
#
#   src/pbx/voices/generate.sh     (needs espeak-ng, which `make test` installs, and sox:
#                                   apt-get install sox)
set -euo pipefail
cd "$(dirname "$0")"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
FORMAT=(-r 8000 -c 1 -b 16)

speak() {
    espeak-ng -v "$2" -s 165 -w "$work/raw.wav" -- "$3"
    sox "$work/raw.wav" "${FORMAT[@]}" "$1" \
        silence 1 0.02 -45d reverse silence 1 0.02 -45d reverse \
        gain -n -6 highpass 300 lowpass 3400 gain -n -3
}

speak "$work/greeting.wav" en-us+f2 \
    "Hi, you have reached extension seven oh six. Please leave a message after the tone."
sox -n "${FORMAT[@]}" "$work/gap.wav" trim 0 0.5
sox -n "${FORMAT[@]}" "$work/beep.wav" synth 0.5 sine 1000 gain -6
sox "$work/greeting.wav" "$work/gap.wav" "$work/beep.wav" machine_greeting.wav

speak hello.wav en-gb "Hello?"
soxi -D machine_greeting.wav hello.wav
