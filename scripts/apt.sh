# Sourced by the scripts that install Debian packages on first use
# (ceph-micro.sh, dist, dist-test): `apt_install PKG...` installs them, as
# root or through sudo, without prompts.
apt_install() {
  local sudo=
  [ "$(id -u)" = 0 ] || sudo=sudo
  echo "Installing $* from apt ..." >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}
