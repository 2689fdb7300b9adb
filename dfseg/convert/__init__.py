"""Converting released weights (the authors' .caffemodel files) to dfseg weights.  Host side."""
