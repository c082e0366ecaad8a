// Diffraction geometry from the server's meta: detector distance and pixel size in metres,
// wavelength in Å, beam centre in pixels. Every function returns null when a value is missing.

function geometry(meta) {
  const g = {
    distance: Number(meta.detector_distance),
    pixel: Number(meta.x_pixel_size),
    wavelength: Number(meta.wavelength),
    beamX: Number(meta.beam_center_x),
    beamY: Number(meta.beam_center_y),
  };
  const ok = [g.distance, g.pixel, g.wavelength].every((v) => Number.isFinite(v) && v > 0);
  return ok && Number.isFinite(g.beamX) && Number.isFinite(g.beamY) ? g : null;
}

export function beamCentre(meta) {
  const x = Number(meta.beam_center_x);
  const y = Number(meta.beam_center_y);
  return Number.isFinite(x) && Number.isFinite(y) ? {x, y} : null;
}

// Radius in pixels of the ring at d-spacing d (Å): 2θ = 2 asin(λ / 2d), r = D tan 2θ / pixel.
export function ringRadius(meta, d) {
  const g = geometry(meta);
  if (!g || !(d > 0) || g.wavelength / (2 * d) >= 1) return null;
  const twoTheta = 2 * Math.asin(g.wavelength / (2 * d));
  if (twoTheta >= Math.PI / 2) return null;
  return (g.distance * Math.tan(twoTheta)) / g.pixel;
}

// Resolution (Å) at detector pixel (x, y): d = λ / (2 sin θ), tan 2θ = r pixel / D.
export function resolutionAt(meta, x, y) {
  const g = geometry(meta);
  if (!g) return null;
  const r = Math.hypot(x - g.beamX, y - g.beamY) * g.pixel;
  if (r === 0) return Infinity;
  const theta = Math.atan(r / g.distance) / 2;
  return g.wavelength / (2 * Math.sin(theta));
}
