# Which services deploy/install.sh runs: with the CUDA build, one daemon per GPU that nvidia-smi
# lists (instarecon@0.service, instarecon@1.service, ...); otherwise the plain instarecon.service.
# Sourced by install.sh; tests source it with an nvidia-smi of their own on PATH.

# How many GPUs nvidia-smi lists (0 without a working nvidia-smi).
gpu_count() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true
    else
        echo 0
    fi
}

# service_names FLAVOUR: the services to enable, one per line.
service_names() {
    local flavour=$1 count index
    count=$(gpu_count)
    if [ "$flavour" = cuda ] && [ "${count:-0}" -gt 0 ]; then
        for ((index = 0; index < count; index++)); do
            echo "instarecon@$index.service"
        done
    else
        echo instarecon.service
    fi
}
