"""The schematic preview engine: what the model's camera will see, drawn without torch or a GPU.

Data flows through the modules in this order:
  motion.py          the job's poses and camera context at each of the 49 video frames
  scene_geometry.py  the ground, each entity's marker and facing arrow as camera-frame
                     polygons, clipped at the near plane and projected with the model's lens
  backdrop.py        sky, ground, 1 m grid and range rings, shaded per pixel (cached per camera)
  draw.py            the markers (supersampled where edges need it) and off-screen pointers
  labels.py          fonts, entity labels, the frame counter and the legend
  engine.py          PreviewEngine: the Engine protocol around all of the above
"""
