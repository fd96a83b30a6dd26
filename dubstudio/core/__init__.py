"""DubStudio core layer: pure Python (no Qt, no torch).

Modules: ``errors`` (the error hierarchy), ``timing`` (exact rational time and budgets),
``model`` (Project, Line, VoiceProfile, EmotionSpec, Take, change events), ``forecast`` (fit
forecast), ``subtitles`` (SRT/WebVTT/ASS in, SRT/ASS out), ``projectfile`` (``.dubproj`` files),
``fsutil`` (atomic writes) and ``commands`` (undoable edits and ``UndoStack``).
"""
