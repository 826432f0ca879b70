"""Raw sockets: live capture on ``AF_PACKET`` (kernel BPF filters, TPACKET_V3 ring), ping and
traceroute. The only code in socketkit that opens packet and raw ICMP sockets."""
