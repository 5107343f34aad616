"""The cogvideox engine: CogVideoX-5B + the 3DTrajMaster injector and LoRA on stock diffusers.

Data flows through these modules in this order:
  commands   CLI flags and entry points (torch-free at import, so --help works without it)
  weights    find and check the release's folders, load them (diffusers, peft, safetensors)
  memory     place the models on the GPU per memory mode; turn an out-of-memory into advice
  hardware, precision, attention, speed
             what the device can do; the dtype (and its refusals); the attention kernel;
             quantisation and compilation (each falling back with a sentence)
  transformer, injector
             diffusers' CogVideoX transformer with the injector blocks of the release
  pipeline   prompt encoding (cached) and annealed sampling on diffusers' CogVideoXPipeline
  engine     the Engine the CLI and the worker call: job in, uint8 frames out
  download, doctor, bench
             getting the weights, checking a machine, measuring speed

reference_injector is the literal, step-by-step form of the injector that the tests and the
benchmark hold the production form against. Importing this package imports nothing heavy.
"""
