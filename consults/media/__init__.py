"""The aiortc media broker: forwards participants' encoded media without re-encoding."""
