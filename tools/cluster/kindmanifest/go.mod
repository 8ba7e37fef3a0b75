module mainsail.local/tools/cluster/kindmanifest

go 1.25.0
