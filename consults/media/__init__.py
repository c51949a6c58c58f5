"""The aiortc media broker: forwards participants' encoded media without re-encoding."""

# What a participant's link carries: everything, a low copy of each video, or no video
# (the session page's choice; Peer.set_link_mode in room.py applies it).
LINK_MODES = ("normal", "low", "audio")
