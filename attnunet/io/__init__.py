"""Reading and writing medical images: NIfTI (fast voxel reads, voxel order), DICOM series and
studies, DICOM-SEG and DICOM test files, and case names from file names. Depends only on
``attnunet.errors`` and ``attnunet.utils``; data, inference and the commands build on it."""
