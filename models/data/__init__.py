"""Training data: the dataset format, the synthetic toon world, and real-video preparation.

Build data::

    python main.py speech-bank --out bank --count 2000            # optional: espeak-ng lines + timings
    python main.py synth --clips 20000 --out toon --speech-bank bank --preview toon.mp4
    python main.py prepare-data my_videos/ --out real --preview real.mp4

Train on it (one resolution per batch, exact resume)::

    from models.data.dataset import WindowDataset
    ds = WindowDataset(["toon", "real"], num_frames=25, batch_size=8, seed=0, rank=rank, world_size=world)
    ds.load_state_dict(saved)                  # {"epoch", "batch", "seed"} or {"position": batch["position"]}
    # repeat=(1, 4): real windows 4x per epoch; video_uint8=True: convert to [-1, 1] on the GPU
    loader = DataLoader(ds, batch_size=None, num_workers=8, pin_memory=True)
    for batch in loader:
        batch["video"]      # (B, 3, T, H, W) float32 in [-1, 1]
        batch["reference"]  # (B, 3, H, W) float32 in [-1, 1], a random frame of the same clip
        batch["audio"]      # (B, T * sample_rate / fps) float32, 16 kHz, aligned with the frames
        batch["keypoints"]  # (B, T, 95, 3) float32 (x, y, confidence), the project's layout
        batch["mouth"]      # (B, T, 4) float32 jaw_open, lip_width, rounding, closure (0 when unknown)
        batch["has_mouth"]  # (B,) bool: mouth parameters are ground truth (synthetic clips)
        batch["audio_ok"]   # (B,) bool: passed the lip-sync filter; else train without audio
        batch["pose_ok"]    # (B,) bool: passed the pose-visibility filter; else train without pose
        batch["caption"]    # list of B str
        batch["clip_id"], batch["start"], batch["fps"]
        batch["position"]   # (2,) int64: resume state after this batch (epoch, batch)

Modules: ``format`` (folder of shards + index.json; ``DatasetWriter``, ``ClipStore``, ``Clip``),
``dataset`` (``WindowDataset``), ``speech`` (espeak-ng via ctypes, ``SpeechBank``), ``visemes``
(``mouth_track``), ``toon`` (characters, skeleton, renderer), ``motion`` (co-speech motion, actions,
retargeting), ``captions``, ``synth`` (``synth_clip``, ``build_synthetic_dataset``), ``prepare``
(``prepare_videos``), ``preview`` (``write_preview``).
"""
