"""zwz.server"""
