#!version:1.0.0.1
## Served by tftpd-hpa: the configuration itself comes from nginx.
include:config "http://127.0.0.1:8081/y000000000066.cfg"
include:config "http://127.0.0.1:8081/$MAC.cfg"
