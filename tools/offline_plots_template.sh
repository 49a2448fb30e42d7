#!/usr/bin/env bash
# Build .dvc/plots/offline.html: DVC's page for `dvc plots show` with the Vega, Vega-Lite and
# Vega-Embed bundles inlined, so the page draws without a network (DVC's default page loads them
# from a CDN). Versions are those dvc-render's default page names; the tarballs come from the npm
# registry and are checked against the SHA-256 below. Licence: BSD-3-Clause, (c) University of
# Washington Interactive Data Lab; the texts are kept beside the template (.dvc/plots/LICENSE-*).
#   bash tools/offline_plots_template.sh        (needs npm and the npm registry; run rarely)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/.dvc/plots"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
declare -A SHA=(
  [vega-5.20.2]=d77deab01d6104b1239228720721f93003e60797d2faced7ffdd759fa70f989d
  [vega-lite-5.2.0]=f64ca4745f043447ac86b67dc9e9592ec2b85ac8b8dafc35faf970f142463e4b
  [vega-embed-6.18.2]=93aeee312e92077b0252ef026c0fe0ec8fa430c19825aeada6cd3a6804e68e1b
)
cd "$work"
for pkg in vega-5.20.2 vega-lite-5.2.0 vega-embed-6.18.2; do
  name=${pkg%-*}; version=${pkg##*-}
  npm pack --silent "$name@$version" > /dev/null
  echo "${SHA[$pkg]}  $pkg.tgz" | sha256sum --check --quiet
  mkdir "$pkg" && tar xzf "$pkg.tgz" -C "$pkg"
  cp "$pkg/package/LICENSE" "$out/LICENSE-$name.txt"
done
{
  echo '<!DOCTYPE html>'
  echo '<html>'
  echo '<head>'
  echo '<meta charset="utf-8">'
  echo '{refresh_tag}'
  echo '<title>DVC plots (offline)</title>'
  echo '<!-- vega 5.20.2, vega-lite 5.2.0, vega-embed 6.18.2 (npm; BSD-3-Clause), inlined by tools/offline_plots_template.sh -->'
  for pkg in vega-5.20.2/package/build/vega.min.js vega-lite-5.2.0/package/build/vega-lite.min.js \
      vega-embed-6.18.2/package/build/vega-embed.min.js; do
    printf '<script>\n'; cat "$pkg"; printf '\n</script>\n'
  done
  echo '<style>table { border-spacing: 15px; } body { font-family: sans-serif; }</style>'
  echo '</head>'
  echo '<body>'
  echo '{plot_divs}'
  echo '</body>'
  echo '</html>'
} > "$out/offline.html"
echo "wrote $out/offline.html ($(wc -c < "$out/offline.html") bytes)"
