"""Sans-I/O protocol cores: framing, the bench control protocol. No sockets, no clock."""
