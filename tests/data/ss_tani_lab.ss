LISTEN    0      4096   198.18.0.1:8082     0.0.0.0:*
	 bbr cwnd:10
LISTEN    0      4096   198.18.0.1:8080     0.0.0.0:*
	 bbr cwnd:10
ESTAB     0      0      198.18.0.1:8080  198.18.0.1:59894
	 bbr wscale:10,10 rto:204 rtt:0.006/0.003 mss:32768 pmtu:65535 rcvmss:536 advmss:65483 cwnd:10 segs_in:2 bbr:(bw:0bps,mrtt:0.006) send 436906666667bps lastsnd:1596 lastrcv:1596 lastack:1596 pacing_rate 1248614370224bps delivered:1 app_limited rcv_space:65483 rcv_ssthresh:65483 minrtt:0.006 snd_wnd:65536
ESTAB     0      0      198.18.0.1:8080  198.18.0.1:59880
	 bbr wscale:10,10 rto:204 rtt:0.007/0.003 mss:32768 pmtu:65535 rcvmss:536 advmss:65483 cwnd:10 segs_in:2 bbr:(bw:0bps,mrtt:0.007) send 374491428571bps lastsnd:1596 lastrcv:1596 lastack:1596 pacing_rate 1070240895144bps delivered:1 app_limited rcv_space:65483 rcv_ssthresh:65483 minrtt:0.007 snd_wnd:65536
TIME-WAIT 0      0      198.18.0.1:8082  198.18.0.1:33460

TIME-WAIT 0      0      198.18.0.1:8082  198.18.0.1:33444

ESTAB     0      0      198.18.0.1:59864 198.18.0.1:8080
	 bbr wscale:10,10 rto:204 rtt:0.034/0.017 mss:32741 pmtu:65535 rcvmss:536 advmss:65483 cwnd:10 bytes_acked:1 segs_out:2 segs_in:1 bbr:(bw:0bps,mrtt:0.034,pacing_gain:1,cwnd_gain:1) send 77037647059bps lastsnd:1600 lastrcv:1600 lastack:1600 pacing_rate 220162146888bps delivered:1 app_limited rcv_space:65495 rcv_ssthresh:65495 minrtt:0.034 snd_wnd:65483
ESTAB     0      0      198.18.0.1:59880 198.18.0.1:8080
	 bbr wscale:10,10 rto:204 rtt:0.005/0.002 mss:32741 pmtu:65535 rcvmss:536 advmss:65483 cwnd:10 bytes_acked:1 segs_out:2 segs_in:1 bbr:(bw:0bps,mrtt:0.005,pacing_gain:1,cwnd_gain:1) send 523856000000bps lastsnd:1600 lastrcv:1600 lastack:1600 pacing_rate 1497102688120bps delivered:1 app_limited rcv_space:65495 rcv_ssthresh:65495 minrtt:0.005 snd_wnd:65483
ESTAB     0      0      198.18.0.1:59894 198.18.0.1:8080
	 bbr wscale:10,10 rto:204 rtt:0.005/0.002 mss:32741 pmtu:65535 rcvmss:536 advmss:65483 cwnd:10 bytes_acked:1 segs_out:2 segs_in:1 bbr:(bw:0bps,mrtt:0.005,pacing_gain:1,cwnd_gain:1) send 523856000000bps lastsnd:1600 lastrcv:1600 lastack:1600 pacing_rate 1497102688120bps delivered:1 app_limited rcv_space:65495 rcv_ssthresh:65495 minrtt:0.005 snd_wnd:65483
ESTAB     0      0      198.18.0.1:8080  198.18.0.1:59864
	 bbr wscale:10,10 rto:204 rtt:0.021/0.01 mss:32768 pmtu:65535 rcvmss:536 advmss:65483 cwnd:10 segs_in:2 bbr:(bw:0bps,mrtt:0.021) send 124830476190bps lastsnd:1600 lastrcv:1600 lastack:1600 pacing_rate 356746950160bps delivered:1 app_limited rcv_space:65483 rcv_ssthresh:65483 minrtt:0.021 snd_wnd:65536
