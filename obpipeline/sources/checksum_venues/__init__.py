"""Checksum venues (OKX, Bitget, Kraken): raw websocket recordings → book messages.

Each venue publishes with its book updates a CRC32 of the top of its book, computed on its own
price/size strings; ``recording.read_recording`` keeps those strings until
``sequence.py`` converts them exactly at the instrument's scales.
"""
