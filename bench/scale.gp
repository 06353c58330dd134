# gnuplot -e "datafile='...'; outfile='...'" bench/scale.gp
# columns: tenants wall_s floor_s rss_idle_kB rss_after_kB heap_idle_kB heap_after_kB rss_total_MB curl_wall_s
set terminal pngcairo size 1000,450 font "sans,11"
set output outfile
set multiplot layout 1,2 title "moltflow-admin: N tenants × 1 call, admin.batch at concurrency 64, TLS at 50 ms RTT"
set logscale x 10
set xrange [50:20000]
set xlabel "tenants"
set grid
set key top left box opaque
set ylabel "seconds"
set logscale y 10
plot datafile using 1:2 with linespoints lw 2 pt 7 title "SDK, Lua 5.4", \
     datafile using 1:9 with linespoints lw 2 pt 9 title "curl --parallel-max 64 (same calls)", \
     datafile using 1:3 with linespoints lw 2 pt 5 dt 2 title "round-trip floor"
unset logscale y
set ylabel "kB per client"
set yrange [0:*]
plot datafile using 1:4 with linespoints lw 2 pt 7 title "RSS, idle", \
     datafile using 1:5 with linespoints lw 2 pt 5 title "RSS, after its call", \
     datafile using 1:6 with linespoints lw 2 pt 9 dt 3 title "Lua heap, idle", \
     datafile using 1:7 with linespoints lw 2 pt 13 dt 3 title "Lua heap, after", \
     4 with lines dt 2 lc rgb "#808080" title "target idle (4 kB)", \
     8 with lines dt 4 lc rgb "#404040" title "target after (8 kB)"
unset multiplot
