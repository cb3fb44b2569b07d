"""zwz.server.engines"""
