"""zwz.server.serving"""
