"""zwz.train"""
