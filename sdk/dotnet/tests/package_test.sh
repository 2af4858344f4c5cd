#!/usr/bin/env bash
# `dotnet pack` makes the NuGet package Perper, versioned with the project (CMakeLists.txt); an
# out-of-tree agent (examples/dotnet/OutOfTree, copied to a temporary folder) restores it from a
# local folder feed, builds, and runs against a real perper-fabric.
#   sdk/dotnet/tests/package_test.sh        (PERPER_FABRIC_BINARY: default build/apps/perper-fabric)
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
fabric_binary=${PERPER_FABRIC_BINARY:-$root/build/apps/perper-fabric}
work=$(mktemp -d)
fabric_pid=
cleanup() {
  if [[ -n $fabric_pid ]]; then kill "$fabric_pid" 2>/dev/null || true; wait "$fabric_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

version=$(sed -n 's/^project(perper VERSION \([0-9.]*\).*/\1/p' "$root/CMakeLists.txt")
[[ -n $version ]] || { echo "no project version in CMakeLists.txt" >&2; exit 1; }

dotnet pack "$root/sdk/dotnet/src/Perper/Perper.csproj" -c Release -o "$work/feed" --nologo -v quiet
[[ -f $work/feed/Perper.$version.nupkg ]] || { echo "dotnet pack made no Perper.$version.nupkg:" >&2; ls "$work/feed" >&2; exit 1; }
contents=$(/usr/bin/python3 -m zipfile -l "$work/feed/Perper.$version.nupkg")
[[ $contents == *lib/net10.0/Perper.dll* ]] || { echo "the package has no lib/net10.0/Perper.dll" >&2; exit 1; }

# A fresh package cache, so that the package just packed is the one used (a cached Perper of the
# same version would be taken instead); the user's cache serves the other packages as a feed.
cp -r "$root/examples/dotnet/OutOfTree" "$work/app"
rm -rf "$work/app/bin" "$work/app/obj"
cache=${NUGET_PACKAGES:-$HOME/.nuget/packages}
cache_source=
if [[ -d $cache ]]; then cache_source="<add key=\"cache\" value=\"$cache\" />"; fi
cat > "$work/app/nuget.config" <<CONFIG
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="perper-local" value="$work/feed" />
    $cache_source
    <add key="nuget.org" value="https://api.nuget.org/v3/index.json" />
  </packageSources>
</configuration>
CONFIG
export NUGET_PACKAGES=$work/packages
dotnet build "$work/app/Greeter.csproj" -p:PerperVersion="$version" --nologo -v quiet -o "$work/out"

"$fabric_binary" --storage memory --listen 127.0.0.1:0 --address-file "$work/address" --log-level warn &
fabric_pid=$!
for _ in $(seq 1500); do [[ -s $work/address ]] && break; sleep 0.01; done
[[ -s $work/address ]] || { echo "perper-fabric did not start" >&2; exit 1; }
output=$(PERPER_FABRIC_ENDPOINT=$(cat "$work/address") timeout 60 dotnet "$work/out/Greeter.dll")
if [[ $output != "Hello, world!" ]]; then
  echo "the out-of-tree agent printed: $output" >&2
  exit 1
fi
echo "package Perper $version: the out-of-tree agent printed: $output"
