"""`deid share`: from a disc, a folder or phone photos to a small bundle an AI assistant
can read, with nothing that identifies.

`series` finds the DICOM series (a DICOMDIR followed) and their key slices, `windows`
picks the windows a viewer would show, `montage` lays slices out in a labelled grid,
`photos` opens photos and screenshots without their metadata, `documents` recognises
identity documents, `encode` makes each image upload-ready, `review` shows the bundle
before it is sent, and `bundle` puts it all together.
"""
