# gnuplot -e "datafile='...'; outfile='...'; seqc=N" bench/concurrency.gp
set terminal pngcairo size 900,600 font "sans,11"
set output outfile
set title "moltflow-admin: requests per second against requests in flight (one nginx, 127.0.0.1)"
set xlabel "requests in flight"
set ylabel "requests per second"
set logscale x 2
set xtics (1, 4, 16, 64)
set xrange [0.8:80]
set yrange [0:*]
set grid
set key top left box opaque
set offsets 0, 0, graph 0.45, 0 # headroom: the key never covers a point
set format y "%.0f"
plot datafile using 1:2 with linespoints lw 2 pt 7 title "C curl-multi loop", \
     datafile using 1:3 with linespoints lw 2 pt 5 title "SDK c:batch, Lua 5.4", \
     datafile using 1:4 with linespoints lw 2 pt 9 title "SDK c:batch, LuaJIT", \
     datafile using 1:5 with linespoints lw 2 pt 13 dt 3 title "SDK core start/poll/finish, Lua 5.4", \
     seqc with lines dt 2 lw 2 lc rgb "#808080" title "C easy loop, sequential (one connection)"
