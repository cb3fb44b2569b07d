"""zwz.distill"""
